//! The host API that runbook scripts call, grouped by area. Each function's comment, with its
//! Rhai example, is the text of the "Rhai API" section of the README.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use crate::script::{
    log_line, record_metric, run_shell_from_script, runtime_error, set_output, skip_step,
};
use crate::sys::hostinfo;

type HostResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine) {
    register_step_api(engine);
    register_process_api(engine);
    register_check_helpers(engine);
}

/// Outcome and outputs of the step.
fn register_step_api(engine: &mut Engine) {
    // log("checked 4 filesystems");           a line in the step's output
    engine.register_fn("log", |message: Dynamic| log_line(&message.to_string()));
    // set("free_pct", 42.5);                  later steps read vars.<this step>.free_pct
    engine.register_fn("set", |name: &str, value: Dynamic| set_output(name, value));
    // metric("disk_free_pct", 42.5);          a numeric measurement, kept with the step
    engine.register_fn("metric", |name: &str, value: f64| {
        record_metric(name, value)
    });
    engine.register_fn("metric", |name: &str, value: i64| {
        record_metric(name, value as f64)
    });
    // assert(free >= 10, `only ${free}% free`);   fails the step when the condition is false
    engine.register_fn(
        "assert",
        |condition: bool, message: Dynamic| -> HostResult<()> {
            if condition {
                Ok(())
            } else {
                Err(runtime_error(message.to_string()))
            }
        },
    );
    engine.register_fn("assert", |condition: bool| -> HostResult<()> {
        if condition {
            Ok(())
        } else {
            Err(runtime_error("assertion failed"))
        }
    });
    // fail("backup is older than a day");     fails the step
    engine.register_fn("fail", |message: Dynamic| -> HostResult<()> {
        Err(runtime_error(message.to_string()))
    });
    // skip("no systemd on this host");        ends the step as skipped, with the reason
    engine.register_fn("skip", |reason: Dynamic| -> HostResult<()> {
        Err(skip_step(&reason.to_string()))
    });
    // now()        -> "2026-11-27T08:15:02Z"   (RFC 3339, UTC)
    engine.register_fn("now", || {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    // unix_time()  -> 1795767302               (seconds since 1970)
    engine.register_fn("unix_time", || chrono::Utc::now().timestamp());
}

/// Commands.
fn register_process_api(engine: &mut Engine) {
    // let r = sh("systemctl is-active nginx");  r.code, r.stdout, r.stderr
    // Runs under the step's timeout; a non-zero code does not fail the step by itself.
    engine.register_fn("sh", |command: &str| -> HostResult<Map> {
        run_shell_from_script(command)
    });
    // which("chronyc") -> true when it is an executable on PATH
    engine.register_fn("which", |command: &str| hostinfo::which(command));
    // processes() -> [#{pid, ppid, state, name}, ...]   ("Z" is a zombie)
    engine.register_fn("processes", || -> Array {
        hostinfo::processes()
            .into_iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("pid".into(), p.pid.into());
                m.insert("ppid".into(), p.ppid.into());
                m.insert("state".into(), p.state.into());
                m.insert("name".into(), p.name.into());
                Dynamic::from_map(m)
            })
            .collect()
    });
}

/// Facts about the host, for checks.
fn register_check_helpers(engine: &mut Engine) {
    // hostname() -> "db1"
    engine.register_fn("hostname", hostinfo::hostname);
    // cpu_count() -> 8
    engine.register_fn("cpu_count", || hostinfo::cpu_count() as i64);
    // uptime_secs() -> 86400.5
    engine.register_fn("uptime_secs", || -> HostResult<f64> {
        hostinfo::uptime_secs().map_err(runtime_error)
    });
    // disk_free_pct("/var/lib/postgresql") -> 37.2   (space free to non-root users)
    engine.register_fn("disk_free_pct", |path: &str| -> HostResult<f64> {
        hostinfo::disk_free_pct(path).map_err(runtime_error)
    });
    // mounts() -> [#{device: "/dev/sda1", mount: "/", fstype: "ext4"}, ...]
    engine.register_fn("mounts", || -> Array {
        hostinfo::mounts()
            .into_iter()
            .map(|m| {
                let mut map = Map::new();
                map.insert("device".into(), m.device.into());
                map.insert("mount".into(), m.mount.into());
                map.insert("fstype".into(), m.fstype.into());
                Dynamic::from_map(map)
            })
            .collect()
    });
    // mem_available_pct() -> 63.0
    engine.register_fn("mem_available_pct", || -> HostResult<f64> {
        hostinfo::mem_available_pct().map_err(runtime_error)
    });
    // load_avg() -> [0.52, 0.40, 0.31]   (1, 5 and 15 minutes)
    engine.register_fn("load_avg", || -> HostResult<Array> {
        hostinfo::load_avg()
            .map(|l| l.iter().map(|v| Dynamic::from_float(*v)).collect())
            .map_err(runtime_error)
    });
    // file_exists("/run/systemd/system") -> true
    engine.register_fn("file_exists", |path: &str| {
        std::path::Path::new(path).exists()
    });
}
