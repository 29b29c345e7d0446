//! Check helpers that read the machine: disks, mounts, processes, files, ports.

use rhai::{Array, Dynamic, Engine, Map};

use crate::script::context::runtime_error;
use crate::sys::hostinfo;

use super::HostResult;

/// Facts about the host, for checks.
pub(super) fn register(engine: &mut Engine) {
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
