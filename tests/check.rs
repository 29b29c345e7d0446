use crate::support::Workspace;

#[test]
fn the_shipped_library_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    Workspace::new()
        .cmd(["--runbooks", &format!("{root}/runbooks"), "check"])
        .run()
        .status(0)
        .stdout_has("valid");
}
