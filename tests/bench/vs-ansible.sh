#!/usr/bin/env bash
# Side-by-side timing of opsbook and Ansible on equivalent work, on this machine.
#
# Installs ansible-core into a temporary virtualenv (from the Python package index), builds
# opsbook in release mode, generates equivalent pairs of workloads, times each whole process
# several times (the two tools alternating, so that both see the same machine state), and prints
# medians, start-up cost, per-step cost (T_large - T_small) / (large - small) and the ratio.
#
#   tests/bench/vs-ansible.sh            # 5 rounds
#   ROUNDS=9 tests/bench/vs-ansible.sh   # more rounds, steadier medians
#   ANSIBLE_VERSION=2.19.4 ...           # another ansible-core
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rounds=${ROUNDS:-5}
ansible_version=${ANSIBLE_VERSION:-2.19.4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building opsbook (release)"
(cd "$repo" && cargo build --release --quiet)
opsbook="$repo/target/release/opsbook"

echo "== installing ansible-core $ansible_version into a temporary virtualenv"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "ansible-core==$ansible_version"

export WORK="$work" OPSBOOK="$opsbook" ROUNDS="$rounds" ANSIBLE_PLAYBOOK="$work/venv/bin/ansible-playbook"
"$work/venv/bin/python" - <<'PY'
import os, statistics, subprocess, time, platform

work = os.environ["WORK"]
opsbook = os.environ["OPSBOOK"]
playbook_bin = os.environ["ANSIBLE_PLAYBOOK"]
rounds = int(os.environ["ROUNDS"])
os.makedirs(f"{work}/runbooks", exist_ok=True)
os.makedirs(f"{work}/scripts", exist_ok=True)
os.makedirs(f"{work}/plays", exist_ok=True)

def write_pair(name, n, opsbook_step, ansible_task):
    steps = "".join(f"  - id: s{i}\n    {opsbook_step(i)}\n" for i in range(n))
    with open(f"{work}/runbooks/{name}.yaml", "w") as f:
        f.write(f"runbook: {name}\ntitle: {name}\nsteps:\n{steps}" if n else "")
    tasks = "".join(ansible_task(i) for i in range(n))
    with open(f"{work}/plays/{name}.yml", "w") as f:
        f.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n" + (tasks or "    - meta: noop\n"))

# Trivial steps: alternately store a value and log a line.
trivial_o = lambda i: f'rhai: \'set("x", {i});\'' if i % 2 == 0 else f'rhai: \'log("step {i}");\''
trivial_a = lambda i: (f"    - set_fact:\n        x: {i}\n" if i % 2 == 0 else f"    - debug:\n        msg: step {i}\n")
assert_o = lambda i: f'rhai: \'assert({i} + 1 == {i + 1}, "arithmetic");\''
assert_a = lambda i: f"    - assert:\n        that: {i} + 1 == {i + 1}\n"
command_o = lambda i: 'shell: "true"'
command_a = lambda i: "    - command: /bin/true\n"

workloads = [
    ("trivial", trivial_o, trivial_a, 50, 200),
    ("assert", assert_o, assert_a, 50, 200),
    ("command", command_o, command_a, 20, 50),
]
for name, o, a, small, large in workloads:
    write_pair(f"{name}-{small}", small, o, a)
    write_pair(f"{name}-{large}", large, o, a)
write_pair("start-1", 1, lambda i: 'rhai: "let x = 1;"', lambda i: "    - meta: noop\n")

env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
           ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="False", NO_COLOR="1")

def opsbook_cmd(name):
    return [opsbook, "--db", f"{work}/opsbook.db", "--runbooks", f"{work}/runbooks", "run", name, "--no-progress"]

def ansible_cmd(name):
    # The module interpreter is named, as a real inventory would, rather than discovered.
    return [playbook_bin, "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={os.path.dirname(playbook_bin)}/python",
            f"{work}/plays/{name}.yml"]

def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t

names = ["start-1"] + [f"{w[0]}-{n}" for w in workloads for n in (w[3], w[4])]
samples = {(tool, n): [] for n in names for tool in ("opsbook", "ansible")}
for tool, cmd in (("opsbook", opsbook_cmd), ("ansible", ansible_cmd)):
    timed(cmd("start-1"))  # warm caches before measuring
for r in range(rounds):
    for n in names:
        for tool, cmd in (("opsbook", opsbook_cmd), ("ansible", ansible_cmd)):
            samples[(tool, n)].append(timed(cmd(n)))
    print(f"   round {r + 1} of {rounds} done", flush=True)

med = {k: statistics.median(v) for k, v in samples.items()}
print()
print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; {rounds} rounds, medians")
print(f"{'workload':<26}{'opsbook':>12}{'ansible':>12}{'ratio':>9}")
print(f"{'start: 1-step run / empty':<26}{med[('opsbook','start-1')]*1000:>10.1f}ms{med[('ansible','start-1')]*1000:>10.0f}ms{med[('ansible','start-1')]/med[('opsbook','start-1')]:>8.0f}x")
for name, _, _, small, large in workloads:
    per = {}
    for tool in ("opsbook", "ansible"):
        t_small, t_large = med[(tool, f"{name}-{small}")], med[(tool, f"{name}-{large}")]
        per[tool] = (t_large - t_small) / (large - small)
        print(f"{name + ' x' + str(small) + ' / x' + str(large) + ' ' + tool:<26}{t_small*1000:>10.1f}ms{t_large*1000:>10.1f}ms")
    print(f"{'  per step (' + name + ')':<26}{per['opsbook']*1000:>10.3f}ms{per['ansible']*1000:>10.2f}ms{per['ansible']/per['opsbook']:>8.0f}x")
PY
