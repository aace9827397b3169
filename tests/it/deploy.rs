//! The Kubernetes manifests and the Dockerfile hang together: the Job's worker count,
//! index wiring and arguments are ones the binary accepts, every ConfigMap and Secret
//! key it reads exists, and the plan it mounts is a valid plan. (CI also validates the
//! manifests against the Kubernetes schemas with kubernetes-validate.)

use std::path::{Path, PathBuf};

use clap::Parser;
use keyclaim_harness::commands::{Cli, Command};
use serde_yaml_ng::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn manifest(name: &str) -> Value {
    let path = deploy_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
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

fn container(job: &Value) -> &Value {
    &at(job, &["spec", "template", "spec", "containers"])[0]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// What the kubelet does to `$(VAR)` in args, for the given variables.
fn expand(arg: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(arg.to_owned(), |arg, (name, value)| {
        arg.replace(&format!("$({name})"), value)
    })
}

/// Every configMapKeyRef and secretKeyRef of `container` names a key that exists, and
/// there is at least one (else nothing was checked).
fn check_env_refs(container: &Value, config: &Value, secret: &Value) {
    let config_name = str_at(config, &["metadata", "name"]);
    let secret_name = str_at(secret, &["metadata", "name"]);
    let mut checked = 0;
    for env in at(container, &["env"]).as_sequence().unwrap() {
        let Some(from) = env.get("valueFrom") else {
            continue;
        };
        if let Some(reference) = from.get("configMapKeyRef") {
            assert_eq!(str_at(reference, &["name"]), config_name);
            let key = str_at(reference, &["key"]);
            assert!(config["data"].get(key).is_some(), "ConfigMap has no {key}");
            checked += 1;
        }
        if let Some(reference) = from.get("secretKeyRef") {
            assert_eq!(str_at(reference, &["name"]), secret_name);
            let key = str_at(reference, &["key"]);
            assert!(
                secret["stringData"].get(key).is_some(),
                "Secret has no {key}"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "the container reads no ConfigMap or Secret key"
    );
}

#[test]
fn the_worker_job_runs_one_share_per_index_with_flags_the_binary_accepts() {
    let job = manifest("job.yaml");
    let (config, secret) = (manifest("configmap.yaml"), manifest("secret.yaml"));
    assert_eq!(str_at(&job, &["spec", "completionMode"]), "Indexed");
    let completions = at(&job, &["spec", "completions"]).as_u64().unwrap();
    assert!(
        completions >= 2,
        "a scale-out job of {completions} worker(s)"
    );
    assert_eq!(
        at(&job, &["spec", "parallelism"]).as_u64(),
        Some(completions),
        "every worker must run at once, or they cannot share a start"
    );
    let container = container(&job);
    let args = strings(at(container, &["args"]));
    let after = |flag: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1].clone()
    };
    assert_eq!(after("--workers"), completions.to_string());
    assert_eq!(after("--worker-index"), "$(JOB_COMPLETION_INDEX)");
    assert!(after("--report-dir").contains("$(JOB_COMPLETION_INDEX)"));
    check_env_refs(container, &config, &secret);

    // The plan argument is the ConfigMap's plan.toml, mounted where the args say.
    let mount = at(container, &["volumeMounts"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| str_at(m, &["name"]) == "plan")
        .unwrap();
    let volume = at(&job, &["spec", "template", "spec", "volumes"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| str_at(v, &["name"]) == "plan")
        .unwrap();
    let item = &at(volume, &["configMap", "items"])[0];
    assert_eq!(
        args[1],
        format!(
            "{}/{}",
            str_at(mount, &["mountPath"]),
            str_at(item, &["path"])
        )
    );
    let plan_text = str_at(&config, &["data", str_at(item, &["key"])]);
    let plan = keyclaim_harness::plan::load_str(Path::new("plan.toml"), plan_text)
        .unwrap_or_else(|err| panic!("the ConfigMap's plan does not load:\n{err}"));
    assert!(
        plan.scenarios.iter().any(|s| s.load.is_some()),
        "a scale-out plan needs a load scenario"
    );
    let start_at = str_at(&config, &["data", "start-at"]);
    keyclaim_harness::scale_out::parse_start_at(start_at).unwrap();

    // Each pod's arguments, as the kubelet expands them, parse into that worker's run.
    for index in 0..completions {
        let index_text = index.to_string();
        let vars = [
            ("JOB_COMPLETION_INDEX", index_text.as_str()),
            ("KEYCLAIM_START_AT", start_at),
        ];
        let argv = std::iter::once("keyclaim-harness".to_owned())
            .chain(args.iter().map(|arg| expand(arg, &vars)))
            .collect::<Vec<_>>();
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|err| panic!("{argv:?}: {err}"));
        let Command::Run(run) = cli.command else {
            panic!("the workers run `run`")
        };
        let worker = run.worker().unwrap().unwrap();
        assert_eq!(
            (u64::from(worker.index()), u64::from(worker.workers())),
            (index, completions)
        );
    }
}

#[test]
fn the_merge_job_reads_what_the_workers_write() {
    let (workers, merge) = (manifest("job.yaml"), manifest("merge-job.yaml"));
    let (config, secret) = (manifest("configmap.yaml"), manifest("secret.yaml"));
    let container = container(&merge);
    check_env_refs(container, &config, &secret);
    assert_eq!(
        str_at(container, &["image"]),
        str_at(self::container(&workers), &["image"])
    );
    let claim = |job: &Value| {
        at(job, &["spec", "template", "spec", "volumes"])
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|v| v.get("persistentVolumeClaim"))
            .map(|c| str_at(c, &["claimName"]).to_owned())
            .unwrap()
    };
    let pvc = manifest("reports-pvc.yaml");
    assert_eq!(claim(&workers), str_at(&pvc, &["metadata", "name"]));
    assert_eq!(claim(&merge), claim(&workers));

    // The shell line, with the glob standing for the workers' directories, is a merge
    // the binary accepts, over the directories the workers' --report-dir names.
    let line = strings(at(container, &["args"])).join(" ");
    let words: Vec<String> = line
        .replace('"', "")
        .replace("$KEYCLAIM_START_AT", "T")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(words[0], "keyclaim-harness");
    let glob = words.iter().find(|w| w.ends_with('*')).unwrap().clone();
    let report_dir = strings(at(self::container(&workers), &["args"]))
        .iter()
        .skip_while(|a| *a != "--report-dir")
        .nth(1)
        .unwrap()
        .replace("$(KEYCLAIM_START_AT)", "T")
        .replace("$(JOB_COMPLETION_INDEX)", "0");
    assert!(
        report_dir.starts_with(glob.trim_end_matches('*')),
        "merge reads {glob}, workers write {report_dir}"
    );
    let argv: Vec<String> = words
        .iter()
        .map(|w| {
            if *w == glob {
                report_dir.clone()
            } else {
                w.clone()
            }
        })
        .collect();
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|err| panic!("{argv:?}: {err}"));
    assert!(matches!(cli.command, Command::Merge(_)));
}

#[test]
fn the_image_runs_the_binary_as_the_user_the_manifests_expect() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("--locked"),
        "the image builds from Cargo.lock"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"keyclaim-harness\"]"));
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .unwrap()
        .trim();
    for name in ["job.yaml", "merge-job.yaml"] {
        let job = manifest(name);
        let context = at(container(&job), &["securityContext"]);
        assert_eq!(
            at(context, &["runAsUser"]).as_u64().map(|u| u.to_string()),
            Some(user.to_owned()),
            "{name}"
        );
    }
}
