//! charts/berth: every invalid value or combination fails `helm template`
//! with a message that names the value (values.schema.json for shapes, `fail`
//! for cross-field rules). helm 3 and helm 4.

use berth_tests::chart::{Render, HELMS};

const WEB: &str = "charts/berth/ci/web-values.yaml";
const JOBS: &str = "charts/berth/ci/jobs-values.yaml";

/// (values file, --set list, text the error must contain)
const CASES: &[(&str, &[&str], &str)] = &[
    // schema: unknown keys, types, enums, patterns
    (WEB, &["workloads.web.replicaz=2"], "replicaz"),
    (WEB, &["defaults.imagePullPolcy=Always"], "imagePullPolcy"),
    (WEB, &["workloads.web.kind=Daemonset"], "/workloads/web/kind"),
    (WEB, &["workloads.web.berth.sidecar=sometimes"], "/workloads/web/berth/sidecar"),
    (WEB, &["workloads.web.berth.drain.delay=5 seconds"], "/workloads/web/berth/drain/delay"),
    (WEB, &["workloads.web.berth.checks.app.type=ftp"], "/workloads/web/berth/checks/app/type"),
    (WEB, &["workloads.Web_2.image.repository=x"], "Web_2"),
    (WEB, &["workloads.test-ready.image.repository=x"], "test-ready"),
    (WEB, &["workloads.web.ports.http.port=70000"], "/workloads/web/ports/http/port"),
    (WEB, &["workloads.web.antiAffinity.type=maybe"], "/workloads/web/antiAffinity/type"),
    // cross-field rules (fail)
    (WEB, &["workloads.web.berth.checks.app.timeout=5s", "workloads.web.berth.checks.app.interval=5s"], "workloads.web.berth.checks.app.timeout=5s must be shorter than workloads.web.berth.checks.app.interval=5s"),
    (WEB, &["workloads.web.berth.startup.waitFor[0]=nosuch"], "workloads.web.berth.startup.waitFor names \"nosuch\""),
    (WEB, &["workloads.web.berth.drain.waitUntilDown[0]=ghost"], "workloads.web.berth.drain.waitUntilDown names \"ghost\""),
    (WEB, &["workloads.web.berth.drain.notify.type=signal"], "workloads.web.berth.drain.notify.process is required"),
    (WEB, &["workloads.web.berth.drain.notify.type=http"], "workloads.web.berth.drain.notify.url is required"),
    (WEB, &["workloads.web.berth.checks.f.type=file"], "workloads.web.berth.checks.f.path is required"),
    (WEB, &["workloads.web.berth.checks.app.maxAge=5s"], "workloads.web.berth.checks.app.maxAge is not a setting of a http check"),
    (WEB, &["workloads.web.berth.checks.app.bogus=1"], "/workloads/web/berth/checks/app"),
    (WEB, &["workloads.web.berth.token=plain-text-token"], "workloads.web.berth.token is a literal"),
    (WEB, &["workloads.web.berth.startup.waitFor[0]=app"], "workloads.web.berth.startup.waitFor names \"app\", a http check on the pod itself"),
    (WEB, &["workloads.web.hook.enabled=true"], "workloads.web.hook.enabled=true is only for kind Job"),
    (WEB, &["workloads.web.metrics.port=nope"], "workloads.web.metrics.port=nope"),
    (WEB, &["workloads.web.ports.berth.port=9000"], "workloads.web.ports.berth"),
    (WEB, &["workloads.web.image.repository="], "workloads.web.image.repository is required"),
    (WEB, &["workloads.web.volumeClaimTemplates.data.mountPath=/d", "workloads.web.volumeClaimTemplates.data.size=1Gi"], "workloads.web.volumeClaimTemplates.data"),
    (WEB, &["workloads.web.securityContext.allowPrivilegeEscalation=true"], "workloads.web.securityContext.allowPrivilegeEscalation"),
    (WEB, &["workloads.web.securityContext.privileged=true"], "workloads.web.securityContext.privileged"),
    (WEB, &["workloads.web.service.enabled=false"], "workloads.web.ingress.enabled=true needs a Service"),
    (WEB, &["workloads.web.ingress.port=admin"], "route port \"admin\""),
    (WEB, &["workloads.web.berth.checks.db.type=postgres", "workloads.web.berth.checks.db.url=postgres://app:${DB_PASSWORD}@db:5432/app"], "workloads.web.berth.checks.db.url uses ${DB_PASSWORD}, but the berth container has no env DB_PASSWORD"),
    (JOBS, &["workloads.nightly.cronJob.schedule="], "workloads.nightly.cronJob.schedule is required"),
    (JOBS, &["workloads.setup.replicas=2"], "workloads.setup.replicas is only for Deployment and StatefulSet"),
];

#[test]
fn every_invalid_value_fails_with_a_message_naming_it() {
    for helm in HELMS {
        for (file, sets, needle) in CASES {
            let mut r = Render::berth(helm).values(file);
            for s in *sets {
                r = r.set(s);
            }
            let err = r.err();
            assert!(
                err.contains(needle),
                "{helm:?} {sets:?}: expected the error to contain {needle:?}, got:\n{err}"
            );
        }
    }
}

#[test]
fn the_same_values_without_the_bad_setting_render() {
    // Guards the table above: each failure comes from its setting, not from
    // a broken base file.
    for helm in HELMS {
        Render::berth(helm).values(WEB).ok();
        Render::berth(helm).values(JOBS).ok();
    }
}

#[test]
fn httproute_without_parent_refs_fails_naming_the_value() {
    for helm in HELMS {
        let err = Render::berth(helm)
            .values(WEB)
            .values_yaml("workloads:\n  web:\n    httpRoute:\n      parentRefs: []\n")
            .api(berth_tests::chart::GATEWAY_API)
            .err();
        assert!(
            err.contains("workloads.web.httpRoute.parentRefs"),
            "{helm:?}: {err}"
        );
    }
}

#[test]
fn clusters_older_than_1_27_are_refused() {
    // unhealthyPodEvictionPolicy (PDB) needs 1.27.
    for helm in HELMS {
        let err = Render::berth(helm).values(WEB).kube("1.26.0").err();
        assert!(err.contains("kubeVersion"), "{helm:?}: {err}");
    }
}
