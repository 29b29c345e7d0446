//! Micro-benchmarks of the engine's hot paths (`cargo bench`). The README's Performance section
//! lists what they measured and the targets they are held to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opsbook::embed::{
    analyze_file, build_engine, AbortSignal, AttemptStatus, Event, Format, Journal, Operator,
    Params, Phase, Renderer, RunReport, RunRequest, RunStatus, RunView, SilentProgress, StepStatus,
};

/// A temporary library holding one runbook of `steps` copies of `step`.
fn library(name: &str, steps: usize, step: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    let mut yaml = format!("runbook: {name}\ntitle: {name}\nsteps:\n");
    for i in 0..steps {
        yaml.push_str(&format!("  - id: s{i}\n    {step}\n"));
    }
    let path = dir.path().join("runbooks").join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

/// One whole run of the runbook at `path`, journal on disk, as `opsbook run` does it.
fn run(runtime: &tokio::runtime::Runtime, path: &Path, db: &Path) {
    let scripts = path.parent().unwrap().parent().unwrap().join("scripts");
    let engine = Arc::new(build_engine(&scripts));
    let plan = analyze_file(path, &scripts, &engine)
        .plan
        .expect("a valid runbook");
    let params = Params::default();
    let request = RunRequest {
        plan,
        engine,
        params,
        operator: Operator::os_user(),
        dry_run: false,
        console: None,
        wait: false,
        supervision: None,
        change: None,
        db: db.to_path_buf(),
        resume: None,
        window: None,
        slot: None,
        park_on_stop: false,
        freeze_break: None,
    };
    let journal = Journal::open(db).unwrap();
    let result = runtime
        .block_on(opsbook::embed::run(
            request,
            journal,
            Arc::new(SilentProgress),
            AbortSignal::default(),
        ))
        .unwrap();
    assert_eq!(result.status, RunStatus::Succeeded);
}

fn steps(c: &mut Criterion) {
    // This binary has no keeper subcommand: commands run under the built `opsbook`.
    opsbook::embed::use_keeper_binary(env!("CARGO_BIN_EXE_opsbook").into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("executor");
    group.sample_size(10);
    for (name, step, n) in [
        ("rhai", r#"rhai: "let x = 1 + 1;""#, 100),
        // Every step sets an output: the per-step cost must not grow with the run's length.
        ("rhai-1000", r#"rhai: "set(\"n\", 1);""#, 1000),
        ("shell", r#"shell: "true""#, 50),
    ] {
        let (dir, path) = library(name, n, step);
        let db = dir.path().join("bench.db");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{name} step (durable journal)"), |b| {
            b.iter(|| run(&runtime, &path, &db))
        });
    }
    let (dir, path) = library("one", 1, r#"rhai: "let x = 1;""#);
    let db = dir.path().join("bench.db");
    group.throughput(Throughput::Elements(1));
    group.bench_function("whole run of a one-step runbook (in process)", |b| {
        b.iter(|| run(&runtime, &path, &db))
    });
    group.finish();
}

fn journal_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(&dir.path().join("append.db")).unwrap();
    let event = Event::AbortRequested { by: "bench".into() };
    c.bench_function("journal append (one durable commit)", |b| {
        b.iter(|| journal.append("R", &event).unwrap())
    });
}

fn analyze(c: &mut Criterion) {
    let (_dir, path) = library(
        "big",
        1000,
        "name: A step\n    timeout: 30s\n    rhai: |\n      let free = 40 + 2;\n      assert(free > 1, `only ${free}`);",
    );
    let scripts = path.parent().unwrap().parent().unwrap().join("scripts");
    let mut group = c.benchmark_group("analyzer");
    group.sample_size(20);
    group.bench_function("load and analyze a 1,000-step runbook", |b| {
        b.iter(|| {
            let engine = build_engine(&scripts);
            assert!(analyze_file(&path, &scripts, &engine).plan.is_some());
        })
    });
    group.finish();
}

/// A journal holding one run of `steps` finished shell steps, written in large transactions.
fn synthetic_journal(path: &Path, steps: usize) {
    let mut journal = Journal::open(path).unwrap();
    let started = Event::RunStarted {
        runbook: "synthetic".into(),
        title: "Synthetic run".into(),
        version: 1,
        content_hash: "0".repeat(64),
        path: "/srv/runbooks/synthetic.yaml".into(),
        params: Default::default(),
        operator: "bench".into(),
        operator_verified: false,
        host: "bench".into(),
        dry_run: false,
        kind: "runbook".into(),
        total_steps: steps,
        pid: 1,
        engine_version: "bench".into(),
        person: "bench".into(),
        role: None,
        auth: "unverified".into(),
        supervisor: None,
        change: None,
        owner: Some("ops".into()),
        window: None,
        risk: "low".into(),
        bundle_hash: None,
        scripts: Default::default(),
        slot: None,
    };
    journal.append("RUN", &started).unwrap();
    let mut batch = Vec::new();
    for i in 0..steps {
        let step = format!("step-{i}");
        batch.push(Event::StepStarted {
            step: step.clone(),
            name: format!("Step number {i}"),
            kind: "shell".into(),
            phase: Phase::Main,
            group: None,
            asks: None,
            processes: None,
        });
        batch.push(Event::AttemptFinished {
            step: step.clone(),
            attempt: 1,
            status: AttemptStatus::Succeeded,
            exit_code: Some(0),
            duration_ms: 3,
            outputs: serde_json::json!({"exit_code": 0, "stdout": format!("line {i}")})
                .as_object()
                .unwrap()
                .clone(),
            metrics: Default::default(),
            excerpt: format!("line {i}"),
            error: None,
        });
        batch.push(Event::StepFinished {
            step,
            status: StepStatus::Succeeded,
            attempts: 1,
            reason: None,
        });
        if batch.len() >= 3000 {
            journal.append_all("RUN", &batch).unwrap();
            batch.clear();
        }
    }
    batch.push(Event::RunFinished {
        status: RunStatus::Succeeded,
        exit_code: 0,
        summary: format!("{steps} succeeded"),
    });
    journal.append_all("RUN", &batch).unwrap();
}

fn reports(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("report.db");
    synthetic_journal(&db, 10_000);
    let renderer = Renderer::new(None).unwrap();
    let mut group = c.benchmark_group("report");
    group.sample_size(10);
    group.bench_function("HTML report of a 10,000-step run, from the journal", |b| {
        b.iter_batched(
            || Journal::open(&db).unwrap(),
            |journal| {
                let view = RunView::from_events(&journal.run_events("RUN").unwrap()).unwrap();
                let chain = journal.verify().unwrap();
                let html = renderer
                    .render_run(&RunReport::new(view, chain), Format::Html)
                    .unwrap();
                assert!(html.len() > 1_000_000);
            },
            BatchSize::PerIteration,
        )
    });
    // Where that time goes.
    let journal = Journal::open(&db).unwrap();
    group.bench_function("  of which: read and fold the run's 30,002 events", |b| {
        b.iter(|| RunView::from_events(&journal.run_events("RUN").unwrap()).unwrap())
    });
    let view = RunView::from_events(&journal.run_events("RUN").unwrap()).unwrap();
    let chain = journal.verify().unwrap();
    group.bench_function("  of which: render the HTML", |b| {
        b.iter_batched(
            || RunReport::new(view.clone(), chain.clone()),
            |report| renderer.render_run(&report, Format::Html).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    // 33,334 steps: 100,004 events.
    synthetic_journal(&db, 33_334);
    let journal = Journal::open(&db).unwrap();
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(100_004));
    group.bench_function("audit verify over 100,000 events", |b| {
        b.iter(|| assert!(journal.verify().unwrap().intact))
    });
    group.finish();
}

criterion_group!(benches, steps, journal_append, analyze, reports, audit);
criterion_main!(benches);
