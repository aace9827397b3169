//! The Kubernetes manifests and the Dockerfile hang together: every pod meets the Pod
//! Security "restricted" profile, the workers' and the coordinator's arguments (with
//! the environment the manifests give them) are ones the binary accepts, every
//! ConfigMap and Secret key they read exists, the plan is a valid plan, and an overlay
//! from `new-run.sh` renders into one run whose names, worker count, rendezvous address
//! and image digest agree. (CI also validates the rendered manifests against the
//! Kubernetes schemas with kubernetes-validate.)
//!
//! The rendered checks need `kubectl` (its built-in kustomize): `KEYCLAIM_KUBECTL` or
//! `kubectl` on the PATH. Without one they say so on stderr and check the files as
//! written only, except under CI (`CI` or `KEYCLAIM_REQUIRE_KUBECTL` set), where a
//! missing kubectl fails them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use keyclaim_harness::commands::{Cli, Command as Subcommand};
use serde::Deserialize;
use serde_yaml_ng::Value;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|err| panic!("{origin}: {err}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The base's resources, as the files hold them.
fn base_files() -> Vec<Value> {
    let kustomization = file_documents("kustomization.yaml").remove(0);
    strings(at(&kustomization, &["resources"]))
        .iter()
        .flat_map(|name| file_documents(name))
        .collect()
}

fn file_documents(name: &str) -> Vec<Value> {
    let path = deploy_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    documents(&text, &path.display().to_string())
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

fn at<'v>(value: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(value, |value, key| {
        value
            .get(*key)
            .unwrap_or_else(|| panic!("no {key} in {path:?}"))
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn of_kind<'d>(docs: &'d [Value], kind: &str) -> Vec<&'d Value> {
    docs.iter()
        .filter(|doc| doc.get("kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

fn component(doc: &Value) -> &str {
    str_at(doc, &["metadata", "labels", "app.kubernetes.io/component"])
}

fn job<'d>(docs: &'d [Value], which: &str) -> &'d Value {
    of_kind(docs, "Job")
        .into_iter()
        .find(|job| component(job) == which)
        .unwrap_or_else(|| panic!("no {which} Job"))
}

fn pod_spec(job: &Value) -> &Value {
    at(job, &["spec", "template", "spec"])
}

fn container(job: &Value) -> &Value {
    &at(pod_spec(job), &["containers"])[0]
}

/// The Pod Security Standards' "restricted" profile (as of Kubernetes 1.37), and what
/// these manifests add to it, on one pod spec.
fn assert_restricted(spec: &Value, name: &str) {
    for forbidden in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            spec.get(forbidden).and_then(Value::as_bool) != Some(true),
            "{name}: {forbidden}"
        );
    }
    assert_eq!(
        spec.get("automountServiceAccountToken")
            .and_then(Value::as_bool),
        Some(false),
        "{name}: the harness needs no API token"
    );
    let pod = at(spec, &["securityContext"]);
    assert_eq!(
        pod.get("runAsNonRoot").and_then(Value::as_bool),
        Some(true),
        "{name}"
    );
    for id in ["runAsUser", "runAsGroup", "fsGroup"] {
        let value = pod.get(id).and_then(Value::as_u64);
        assert!(value.is_some_and(|v| v > 0), "{name}: {id} {value:?}");
    }
    assert_eq!(
        str_at(pod, &["seccompProfile", "type"]),
        "RuntimeDefault",
        "{name}"
    );
    for volume in at(spec, &["volumes"]).as_sequence().unwrap() {
        let kinds: Vec<&str> = volume
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .filter(|key| *key != "name")
            .collect();
        for kind in kinds {
            assert!(
                [
                    "configMap",
                    "csi",
                    "downwardAPI",
                    "emptyDir",
                    "ephemeral",
                    "persistentVolumeClaim",
                    "projected",
                    "secret"
                ]
                .contains(&kind),
                "{name}: volume type {kind} is not allowed under restricted"
            );
        }
    }
    let containers = at(spec, &["containers"]).as_sequence().unwrap();
    let init = spec
        .get("initContainers")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for container in containers.iter().chain(&init) {
        let context = at(container, &["securityContext"]);
        let named = format!("{name}/{}", str_at(container, &["name"]));
        assert_eq!(
            context
                .get("allowPrivilegeEscalation")
                .and_then(Value::as_bool),
            Some(false),
            "{named}"
        );
        assert!(
            context.get("privileged").and_then(Value::as_bool) != Some(true),
            "{named}"
        );
        assert_eq!(
            context
                .get("readOnlyRootFilesystem")
                .and_then(Value::as_bool),
            Some(true),
            "{named}"
        );
        let capabilities = at(context, &["capabilities"]);
        assert_eq!(strings(at(capabilities, &["drop"])), ["ALL"], "{named}");
        let added = capabilities.get("add").map(strings).unwrap_or_default();
        assert!(
            added.iter().all(|c| c == "NET_BIND_SERVICE"),
            "{named}: adds {added:?}"
        );
        if let Some(user) = context.get("runAsUser").and_then(Value::as_u64) {
            assert!(user > 0, "{named}: runs as root");
        }
    }
}

/// The pod's environment, with ConfigMap and Secret references resolved against `docs`
/// and the kubelet's `$(JOB_COMPLETION_INDEX)` set to `index`.
fn environment(docs: &[Value], job: &Value, index: u64) -> BTreeMap<String, String> {
    let lookup = |kind: &str, name: &str, key: &str| -> String {
        let holder = of_kind(docs, kind)
            .into_iter()
            .find(|doc| str_at(doc, &["metadata", "name"]) == name);
        // The base has no Secret on purpose (each run's overlay generates it).
        let Some(holder) = holder else {
            assert!(
                kind == "Secret" && name == "keyclaim-keys",
                "no {kind} {name}"
            );
            return "kc_made_by_each_run".to_owned();
        };
        let data = holder
            .get("data")
            .and_then(|data| data.get(key))
            .or_else(|| holder.get("stringData").and_then(|data| data.get(key)))
            .unwrap_or_else(|| panic!("{kind} {name} has no {key}"));
        data.as_str().unwrap().to_owned()
    };
    let mut env = BTreeMap::from([("JOB_COMPLETION_INDEX".to_owned(), index.to_string())]);
    for var in at(container(job), &["env"]).as_sequence().unwrap() {
        let name = str_at(var, &["name"]).to_owned();
        let value = if let Some(value) = var.get("value") {
            value.as_str().unwrap().to_owned()
        } else if let Some(reference) = var.get("valueFrom").and_then(|f| f.get("configMapKeyRef"))
        {
            lookup(
                "ConfigMap",
                str_at(reference, &["name"]),
                str_at(reference, &["key"]),
            )
        } else if let Some(reference) = var.get("valueFrom").and_then(|f| f.get("secretKeyRef")) {
            lookup(
                "Secret",
                str_at(reference, &["name"]),
                str_at(reference, &["key"]),
            )
        } else {
            // Downward API (resource limits): not the binary's concern here.
            continue;
        };
        env.insert(name, value);
    }
    env
}

/// Parses the container's arguments as the binary would, with `env` as its only
/// environment (clap reads `env = ...` options from the process environment, so
/// they are turned into flags here).
fn parse(job: &Value, env: &BTreeMap<String, String>) -> Cli {
    let flags = [
        ("KEYCLAIM_WORKERS", "--workers"),
        ("KEYCLAIM_RENDEZVOUS", "--rendezvous"),
        ("KEYCLAIM_TARGET", "--target"),
        ("KEYCLAIM_API_KEY", "--api-key"),
        ("KEYCLAIM_REGISTER_TIMEOUT", "--register-timeout"),
        ("KEYCLAIM_ON_MISSING", "--on-missing"),
    ];
    let mut argv = vec!["keyclaim-harness".to_owned()];
    for arg in strings(at(container(job), &["args"])) {
        argv.push(env.iter().fold(arg, |arg, (name, value)| {
            arg.replace(&format!("$({name})"), value)
        }));
    }
    for (var, flag) in flags {
        if let Some(value) = env.get(var) {
            argv.extend([flag.to_owned(), value.clone()]);
        }
    }
    Cli::try_parse_from(&argv).unwrap_or_else(|err| panic!("{argv:?}: {err}"))
}

/// Checks one rendered run: it is what the workers and the coordinator need.
fn check_run(docs: &[Value], workers: u64, suffix: &str) {
    for doc in docs {
        let name = str_at(doc, &["metadata", "name"]);
        assert!(
            name.contains(suffix),
            "{name} lacks the run's suffix {suffix}"
        );
    }
    let (workers_job, coordinator_job) = (job(docs, "worker"), job(docs, "coordinator"));
    for job in [workers_job, coordinator_job] {
        assert_restricted(pod_spec(job), str_at(job, &["metadata", "name"]));
    }
    let spec = at(workers_job, &["spec"]);
    assert_eq!(str_at(spec, &["completionMode"]), "Indexed");
    assert_eq!(at(spec, &["completions"]).as_u64(), Some(workers));
    assert_eq!(
        at(spec, &["parallelism"]).as_u64(),
        Some(workers),
        "every worker must run at once, or they cannot share a start"
    );
    assert!(at(spec, &["backoffLimitPerIndex"]).as_u64().is_some());
    assert!(at(spec, &["maxFailedIndexes"]).as_u64().unwrap() < workers);
    assert!(at(spec, &["activeDeadlineSeconds"]).as_u64().is_some());
    // A usage error fails the whole Job; what a worker exits with otherwise fails
    // only its index; a disruption is not counted.
    let rules = at(spec, &["podFailurePolicy", "rules"])
        .as_sequence()
        .unwrap();
    let action_for = |code: u64| {
        rules
            .iter()
            .find(|rule| {
                rule.get("onExitCodes").is_some_and(|codes| {
                    at(codes, &["values"])
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .any(|v| v.as_u64() == Some(code))
                })
            })
            .map(|rule| str_at(rule, &["action"]).to_owned())
    };
    assert_eq!(action_for(2).as_deref(), Some("FailJob"));
    for code in [1, 3, 4, 130] {
        assert_eq!(
            action_for(code).as_deref(),
            Some("FailIndex"),
            "exit {code}"
        );
    }
    assert!(
        rules
            .iter()
            .any(|rule| rule.get("onPodConditions").is_some()
                && str_at(rule, &["action"]) == "Ignore")
    );
    // Guaranteed QoS in whole CPUs; the runtime's threads come from the CPU limit.
    let resources = at(container(workers_job), &["resources"]);
    assert_eq!(at(resources, &["requests"]), at(resources, &["limits"]));
    let cpu = str_at(resources, &["limits", "cpu"]);
    assert!(
        cpu.parse::<u32>().is_ok_and(|n| n >= 1),
        "whole CPUs: {cpu}"
    );
    let threads = at(container(workers_job), &["env"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|var| str_at(var, &["name"]) == "TOKIO_WORKER_THREADS")
        .expect("the runtime's threads are set");
    assert_eq!(
        str_at(threads, &["valueFrom", "resourceFieldRef", "resource"]),
        "limits.cpu"
    );
    // Hard anti-affinity on the node, counting only this Job's pods.
    let term = &at(
        pod_spec(workers_job),
        &[
            "affinity",
            "podAntiAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
    )[0];
    assert_eq!(str_at(term, &["topologyKey"]), "kubernetes.io/hostname");
    assert_eq!(
        strings(at(term, &["matchLabelKeys"])),
        ["batch.kubernetes.io/controller-uid"]
    );

    // Each worker pod's command line, as the kubelet expands it with the ConfigMap and
    // Secret it reads, is that worker's run, pointed at the coordinator's Service.
    let service = of_kind(docs, "Service")[0];
    let port = at(service, &["spec", "ports"])[0]["port"].as_u64().unwrap();
    assert_eq!(at(service, &["spec", "clusterIP"]).as_str(), Some("None"));
    assert_eq!(
        at(service, &["spec", "publishNotReadyAddresses"]).as_bool(),
        Some(true)
    );
    let selector = at(service, &["spec", "selector"]).as_mapping().unwrap();
    let pod_labels = at(coordinator_job, &["spec", "template", "metadata", "labels"]);
    for (key, value) in selector {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "the Service selects the coordinator"
        );
    }
    let rendezvous = format!("http://{}:{port}", str_at(service, &["metadata", "name"]));
    for index in 0..workers {
        let env = environment(docs, workers_job, index);
        assert_eq!(env["KEYCLAIM_RENDEZVOUS"], rendezvous);
        let Subcommand::Run(run) = parse(workers_job, &env).command else {
            panic!("the workers run `run`")
        };
        let worker = run.worker().unwrap().unwrap();
        assert_eq!(
            (u64::from(worker.index()), u64::from(worker.workers())),
            (index, workers)
        );
        assert_eq!(run.rendezvous.as_deref(), Some(rendezvous.as_str()));
        let plan_path = &run.plans[0];
        let mount = at(container(workers_job), &["volumeMounts"])
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| plan_path.starts_with(str_at(m, &["mountPath"])))
            .expect("the plan is on a mounted volume");
        assert_eq!(str_at(mount, &["name"]), "plan");
    }
    let coordinator_env = environment(docs, coordinator_job, 0);
    let Subcommand::Coordinate(coordinate) = parse(coordinator_job, &coordinator_env).command
    else {
        panic!("the coordinator runs `coordinate`")
    };
    assert_eq!(u64::from(coordinate.workers), workers);
    assert_eq!(u64::from(coordinate.listen.port()), port);
    let probe = at(container(coordinator_job), &["readinessProbe", "httpGet"]);
    assert_eq!(
        str_at(probe, &["path"]),
        keyclaim_harness::scale_out::rendezvous::MERGED_PATH
    );
}

#[test]
fn every_pod_of_the_base_meets_pod_security_restricted() {
    let docs = base_files();
    let jobs = of_kind(&docs, "Job");
    assert_eq!(jobs.len(), 2, "the coordinator and the workers");
    for job in jobs {
        assert_restricted(pod_spec(job), str_at(job, &["metadata", "name"]));
    }
    let component = file_documents("components/generator-pool/kustomization.yaml").remove(0);
    assert_eq!(str_at(&component, &["kind"]), "Component");
}

#[test]
fn the_base_plan_is_a_valid_load_plan() {
    let path = deploy_dir().join("plan.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let plan = keyclaim_harness::plan::load_str(&path, &text)
        .unwrap_or_else(|err| panic!("the base's plan does not load:\n{err}"));
    assert!(
        plan.scenarios.iter().any(|s| s.load.is_some()),
        "a scale-out plan needs a load scenario"
    );
}

/// The `kubectl` to render with, or `None` (said on stderr) when there is none and CI
/// does not require one.
fn kubectl() -> Option<PathBuf> {
    let candidate = std::env::var_os("KEYCLAIM_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let works = Command::new(&candidate)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|out| out.status.success());
    if works {
        return Some(candidate);
    }
    let required =
        std::env::var_os("CI").is_some() || std::env::var_os("KEYCLAIM_REQUIRE_KUBECTL").is_some();
    assert!(
        !required,
        "no working kubectl ({}) to render the manifests with; set KEYCLAIM_KUBECTL",
        candidate.display()
    );
    eprintln!("SKIPPED the rendered-manifest checks: no kubectl (set KEYCLAIM_KUBECTL)");
    None
}

fn kustomize(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap(), "kubectl kustomize")
}

fn new_run(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(deploy_dir().join("new-run.sh"))
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .env("KEYCLAIM_API_KEY", "kc_deploy_test_key")
        .output()
        .expect("new-run.sh runs")
}

#[test]
fn the_base_renders_into_a_run_the_binary_accepts() {
    let Some(kubectl) = kubectl() else { return };
    check_run(&kustomize(&kubectl, &deploy_dir()), 4, "keyclaim-");
}

#[test]
fn two_runs_in_a_row_get_their_own_names_secret_and_pinned_image() {
    let Some(kubectl) = kubectl() else { return };
    let root = tempfile::tempdir().unwrap();
    let image = format!("registry.example/keyclaim-harness@{DIGEST}");
    let mut names = Vec::new();
    for (run, workers, pool) in [("first", 3, false), ("second", 5, true)] {
        let dir = root.path().join(run);
        let mut args = vec!["--image", &image, "--run-id", run];
        let workers_text = workers.to_string();
        args.extend([
            "--workers",
            &workers_text,
            "--target",
            "https://kc.example.test",
        ]);
        if pool {
            // The second run also takes the optional components: live metrics too.
            args.extend(["--generator-pool", "--metrics"]);
        }
        let written = new_run(&dir, &args);
        assert!(
            written.status.success(),
            "{}",
            String::from_utf8_lossy(&written.stderr)
        );
        let keys = dir.join("keys.env");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "keys.env is readable by others: {mode:o}");
        }
        let docs = kustomize(&kubectl, &dir);
        check_run(&docs, workers, &format!("-{run}"));
        for doc in &docs {
            names.push(str_at(doc, &["metadata", "name"]).to_owned());
            let labels = at(doc, &["metadata", "labels"]);
            assert_eq!(
                labels.get("keyclaim.dev/run").and_then(Value::as_str),
                Some(run)
            );
        }
        for job in of_kind(&docs, "Job") {
            assert_eq!(str_at(container(job), &["image"]), image);
        }
        let secret = of_kind(&docs, "Secret")[0];
        assert_ne!(
            str_at(secret, &["metadata", "name"]),
            "keyclaim-keys",
            "a generated Secret never replaces one that exists"
        );
        let worker_spec = pod_spec(job(&docs, "worker"));
        assert_eq!(worker_spec.get("nodeSelector").is_some(), pool, "{run}");
        // --metrics: every worker serves its figures where the scrape annotations say.
        let workers_job = job(&docs, "worker");
        let Subcommand::Run(args) = parse(workers_job, &environment(&docs, workers_job, 0)).command
        else {
            panic!("the workers run `run`")
        };
        assert_eq!(
            args.metrics_listen.as_deref(),
            pool.then_some("0.0.0.0:9464"),
            "{run}"
        );
        let annotation = |name: &str| {
            at(workers_job, &["spec", "template", "metadata"])
                .get("annotations")
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(
            annotation("prometheus.io/scrape").as_deref(),
            pool.then_some("true")
        );
        assert_eq!(
            annotation("prometheus.io/port").as_deref(),
            pool.then_some("9464")
        );
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "two runs share a name: {names:?}"
    );
}

#[test]
fn new_run_refuses_an_image_not_pinned_by_digest_and_a_missing_key() {
    let root = tempfile::tempdir().unwrap();
    let tagged = new_run(
        &root.path().join("a"),
        &["--image", "registry.example/keyclaim-harness:1"],
    );
    assert_eq!(tagged.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tagged.stderr).contains("by digest"));
    let no_key = Command::new(deploy_dir().join("new-run.sh"))
        .args(["--out", root.path().join("b").to_str().unwrap()])
        .args([
            "--image",
            &format!("registry.example/keyclaim-harness@{DIGEST}"),
        ])
        .env_remove("KEYCLAIM_API_KEY")
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("KEYCLAIM_API_KEY is not set"));
}

#[test]
fn the_image_runs_the_binary_as_the_user_and_group_the_manifests_expect() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("--locked"),
        "the image builds from Cargo.lock"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"keyclaim-harness\"]"));
    let mut stages = Vec::new();
    for from in dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("FROM "))
    {
        let mut words = from.split_whitespace();
        let image = words.next().unwrap();
        if !stages.contains(&image) {
            assert!(
                image.contains("@sha256:"),
                "base image not pinned by digest: {from}"
            );
        }
        if let (Some("AS"), Some(stage)) = (words.next(), words.next()) {
            stages.push(stage);
        }
    }
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .unwrap()
        .trim();
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    for job in of_kind(&base_files(), "Job") {
        let context = at(pod_spec(job), &["securityContext"]);
        assert_eq!(
            at(context, &["runAsUser"])
                .as_u64()
                .map(|u| u.to_string())
                .as_deref(),
            Some(uid)
        );
        assert_eq!(
            at(context, &["runAsGroup"])
                .as_u64()
                .map(|g| g.to_string())
                .as_deref(),
            Some(gid)
        );
    }
}
