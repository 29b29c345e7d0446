use crate::support::Workspace;

#[test]
fn host_health_runs_on_this_machine() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ws = Workspace::new();
    let out = ws
        .cmd([
            "--runbooks",
            &format!("{root}/runbooks"),
            "run",
            "host-health",
        ])
        .run()
        .status(0)
        .stdout_has("✓ disk")
        .stdout_has("succeeded in");
    let id = out.run_id();
    ws.cmd(["show", &id])
        .run()
        .status(0)
        .stdout_has("status:   succeeded");
    let runs = ws.cmd(["runs", "--json"]).run().status(0).json();
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "succeeded");
}
