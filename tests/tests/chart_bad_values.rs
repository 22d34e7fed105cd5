//! charts/berth: every invalid value or combination fails `helm template`
//! with a message that names the value (values.schema.json for shapes, `fail`
//! for cross-field rules). helm 3 and helm 4.

use berth_tests::chart::{Render, HELMS};

const WEB: &str = "charts/berth/ci/web-values.yaml";
const JOBS: &str = "charts/berth/ci/jobs-values.yaml";
const STS: &str = "charts/berth/ci/statefulset-values.yaml";

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
    // values that would render and then crash-loop berth or be refused by the API server
    (WEB, &["workloads.web.berth.drain.timeout=3s"], "workloads.web.berth.drain.timeout=3s must be greater than workloads.web.berth.drain.delay=3s"),
    (WEB, &["workloads.web.berth.drain.delay=1m", "workloads.web.berth.drain.timeout=30s"], "workloads.web.berth.drain.timeout=30s must be greater than workloads.web.berth.drain.delay=1m"),
    (WEB, &["workloads.web.berth.checks.app.url=https://127.0.0.1:8443/healthz"], "workloads.web.berth.checks.app.url=\"https://127.0.0.1:8443/healthz\": an http check speaks plain HTTP"),
    (WEB, &["workloads.web.berth.checks.app.url=127.0.0.1:8080/healthz"], "workloads.web.berth.checks.app.url=\"127.0.0.1:8080/healthz\" is not an http:// URL"),
    (WEB, &["workloads.web.berth.checks.db.type=postgres", "workloads.web.berth.checks.db.url=mysql://db:3306/app"], "workloads.web.berth.checks.db.url: a postgres check takes a postgres:// or postgresql:// URL"),
    (JOBS, &["workloads.nightly.cronJob.schedule=17 3 * *"], "workloads.nightly.cronJob.schedule=\"17 3 * *\" is not a cron schedule"),
    (JOBS, &["workloads.nightly.cronJob.schedule=17 3 * * * *"], "workloads.nightly.cronJob.schedule=\"17 3 * * * *\" is not a cron schedule"),
    (JOBS, &["workloads.nightly.cronJob.schedule=@fortnightly"], "workloads.nightly.cronJob.schedule=\"@fortnightly\" is not a cron schedule"),
    (JOBS, &["workloads.nightly.cronJob.schedule=CRON_TZ=UTC 17 3 * * *"], "set workloads.nightly.cronJob.timeZone instead"),
    (JOBS, &["workloads.nightly.cronJob.timeZone=UTC+2"], "workloads.nightly.cronJob.timeZone=\"UTC+2\" is not an IANA time zone name"),
    (JOBS, &["workloads.nightly.cronJob.timeZone=+02:00"], "workloads.nightly.cronJob.timeZone=\"+02:00\" is not an IANA time zone name"),
    (WEB, &["workloads.web.ports.metrics-exporter-v2.port=9100"], "workloads.web.ports.metrics-exporter-v2: a container port name has at most 15 characters"),
    (WEB, &["workloads.web.ports.8081.port=8081"], "workloads.web.ports.8081: a container port name needs at least one letter"),
    (WEB, &["workloads.web.ports.my--port.port=8081"], "workloads.web.ports.my--port: a container port name needs at least one letter and no '--'"),
    (WEB, &["workloads.web.podLabels.app\\.kubernetes\\.io/component=x"], "workloads.web.podLabels.app.kubernetes.io/component is a selector label"),
    (WEB, &["workloads.web.podLabels.app\\.kubernetes\\.io/name=web"], "workloads.web.podLabels.app.kubernetes.io/name is a selector label"),
    (WEB, &["workloads.web.labels.helm\\.sh/chart=x"], "workloads.web.labels.helm.sh/chart is one of the chart's own labels"),
    (WEB, &["workloads.web.service.labels.app\\.kubernetes\\.io/instance=x"], "workloads.web.service.labels.app.kubernetes.io/instance is one of the chart's own labels"),
    (WEB, &["commonLabels.app\\.kubernetes\\.io/instance=x"], "commonLabels.app.kubernetes.io/instance is one of the chart's own labels"),
    // the grace rule names the way out when the app drains itself
    (WEB, &["workloads.web.terminationGracePeriodSeconds=10"], "or set workloads.web.berth.preStop: false"),
    (WEB, &["workloads.web.probes.liveness.successThreshold=2"], "workloads.web.berth.mainProbes.liveness.successThreshold=2"),
    // groups and the gRPC health port
    (WEB, &["workloads.web.berth.groups.deps[0]=ghost"], "workloads.web.berth.groups.deps names \"ghost\", which is not an enabled check"),
    (WEB, &["workloads.web.berth.groups.Bad_Name[0]=app"], "/workloads/web/berth/groups"),
    (WEB, &["workloads.web.berth.grpcPort=8642"], "workloads.web.berth.grpcPort=8642 is berth's health port"),
    (WEB, &["workloads.web.berth.grpcPort=8643"], "workloads.web.berth.grpcPort=8643 is berth's lifecycle port"),
    (WEB, &["workloads.web.berth.grpcPort=70000"], "/workloads/web/berth/grpcPort"),
    // names
    (WEB, &["workloads.web.nameOverride=shared", "workloads.other.image.repository=x", "workloads.other.nameOverride=shared"], "the name of workload shared is already used by workloads.other"),
    (WEB, &["workloads.web.service.nameOverride=taken", "workloads.web.services.extra.nameOverride=taken"], "the name of Service taken is already used by workloads.web"),
    (WEB, &["defaults.nameOverride=all"], "defaults.nameOverride=all"),
    (WEB, &["workloads.web.nameOverride=Web_1"], "/workloads/web/nameOverride"),
    // Services
    (WEB, &["workloads.web.services.admin.ports.admin.port=9000"], "workloads.web.services.admin.ports.admin.targetPort=admin is not one of workloads.web.ports"),
    (WEB, &["workloads.web.services.x.ports.life.targetPort=8643"], "workloads.web.services.x.ports.life.targetPort=8643 is a berth port"),
    (WEB, &["workloads.web.services.h.headless=true", "workloads.web.services.h.type=LoadBalancer"], "workloads.web.services.h.headless=true needs type ClusterIP"),
    (WEB, &["workloads.web.services.n.ports.http.nodePort=30080"], "workloads.web.services.n.ports.http.nodePort needs workloads.web.services.n.type NodePort or LoadBalancer"),
    (WEB, &["workloads.web.services.x.ports.http.port=70000"], "/workloads/web/services/x"),
    (WEB, &["workloads.web.serviceName=peers"], "workloads.web.serviceName is for a StatefulSet"),
    (STS, &["workloads.store.serviceName=raft"], "workloads.store.serviceName=raft is not a key of workloads.store.services"),
    (STS, &["workloads.store.serviceName=peers", "workloads.store.services.peers.type=ClusterIP"], "workloads.store.serviceName=peers: the governing Service gives each pod its DNS name and must be headless"),
    (STS, &["workloads.store.podManagementPolicy=Sometimes"], "/workloads/store/podManagementPolicy"),
    (JOBS, &["workloads.setup.services.x.type=ClusterIP"], "workloads.setup.services.x: Services are for long-running workloads"),
    // ServiceAccounts and RBAC
    (WEB, &["workloads.web.rbac.read.rules[0].verbs[0]=get"], "workloads.web.rbac.read binds the workload's own ServiceAccount: set workloads.web.serviceAccount.create=true"),
    (WEB, &["workloads.web.serviceAccount.create=true", "workloads.web.rbac.read.kind=Role"], "workloads.web.rbac.read needs rules"),
    (WEB, &["workloads.web.serviceAccount.create=true", "workloads.web.rbac.read.rules[0].verbs[0]=get", "workloads.web.rbac.read.roleRef.name=view"], "workloads.web.rbac.read: give either rules"),
    (WEB, &["workloads.web.serviceAccount.create=true", "workloads.web.rbac.r.kind=ClusterRole", "workloads.web.rbac.r.roleRef.kind=Role", "workloads.web.rbac.r.roleRef.name=x"], "workloads.web.rbac.r.kind=ClusterRole binds cluster-wide and can only reference a ClusterRole"),
    (WEB, &["workloads.web.serviceAccount.create=true", "workloads.web.rbac.r.rules[0].resources[0]=pods"], "/workloads/web/rbac/r"),
    (WEB, &["workloads.web.kubernetesApi.enabled=true", "networkPolicy.kubernetesApi.cidrs[0]=apiserver"], "/networkPolicy/kubernetesApi/cidrs/0"),
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
        Render::berth(helm).values(STS).ok();
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
