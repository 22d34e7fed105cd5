{{/*
Cross-field rules that values.schema.json cannot express. Each failure
names the value to change. Called once from workloads.yaml.
(The grace-period, check and drain rules live in berth-lib, which runs them
for every chart that uses it.)
*/}}
{{- define "berth.validate" -}}
{{- range $name := include "berth.enabledWorkloads" . | fromJsonArray -}}
{{- $w := include "berth.workload" (dict "root" $ "name" $name) | fromJson -}}
{{- $p := printf "workloads.%s" $name -}}
{{- $raw := get $.Values.workloads $name | default dict -}}
{{- $longRunning := has $w.kind (list "Deployment" "StatefulSet") -}}
{{- /* HPA */ -}}
{{- if $w.hpa.enabled -}}
{{- if not $longRunning -}}
{{- fail (printf "%s.hpa.enabled=true: an HPA scales a Deployment or StatefulSet, not a %s (%s.kind)" $p $w.kind $p) -}}
{{- end -}}
{{- if not (kindIs "invalid" $w.replicas) -}}
{{- fail (printf "%s.replicas=%v must not be set when %s.hpa.enabled=true: the HPA owns the replica count (set %s.hpa.minReplicas instead)" $p $w.replicas $p $p) -}}
{{- end -}}
{{- if gt (int $w.hpa.minReplicas) (int $w.hpa.maxReplicas) -}}
{{- fail (printf "%s.hpa.minReplicas=%d is greater than %s.hpa.maxReplicas=%d" $p (int $w.hpa.minReplicas) $p (int $w.hpa.maxReplicas)) -}}
{{- end -}}
{{- $metrics := $w.hpa.metrics | default (list (dict "type" "Resource" "resource" (dict "name" "cpu" "target" (dict "type" "Utilization")))) -}}
{{- range $metrics -}}
{{- if and (eq (toString .type) "Resource") (eq (toString (dig "resource" "target" "type" "" .)) "Utilization") -}}
{{- $res := toString (dig "resource" "name" "" .) -}}
{{- if not (dig "requests" $res "" ($w.resources | default dict)) -}}
{{- fail (printf "%s.hpa: a %s Utilization metric needs %s.resources.requests.%s (utilization is relative to the request)" $p $res $p $res) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* PDB: never render one that blocks every eviction */ -}}
{{- if and $w.pdb.enabled $longRunning -}}
{{- $replicas := int (ternary $w.hpa.minReplicas ($w.replicas | default 1) (and $w.hpa.enabled true)) -}}
{{- if $w.queueScaling.enabled -}}{{- $replicas = int $w.queueScaling.minReplicas -}}{{- end -}}
{{- if not (kindIs "invalid" $w.pdb.minAvailable) -}}
{{- $m := toString $w.pdb.minAvailable -}}
{{- if hasSuffix "%" $m -}}
{{- if ge (trimSuffix "%" $m | atoi) 100 -}}
{{- fail (printf "%s.pdb.minAvailable=%s would block every eviction (node drains, cluster upgrades): use %s.pdb.maxUnavailable or a lower percentage" $p $m $p) -}}
{{- end -}}
{{- else if ge (atoi $m) $replicas -}}
{{- fail (printf "%s.pdb.minAvailable=%s would block every eviction with %d replica(s) (%s): use %s.pdb.maxUnavailable=1 or raise the replicas" $p $m $replicas (ternary (printf "%s.hpa.minReplicas" $p) (printf "%s.replicas" $p) (and $w.hpa.enabled true)) $p) -}}
{{- end -}}
{{- else -}}
{{- $m := toString $w.pdb.maxUnavailable -}}
{{- if or (eq $m "0") (eq $m "0%") (eq $m "<nil>") (eq $m "") -}}
{{- fail (printf "%s.pdb.maxUnavailable=%s would block every eviction (node drains, cluster upgrades): use at least 1 or set %s.pdb.enabled=false" $p $m $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Hooks, CronJobs */ -}}
{{- if and $w.hook.enabled (ne $w.kind "Job") -}}
{{- fail (printf "%s.hook.enabled=true is only for kind Job (%s.kind=%s)" $p $p $w.kind) -}}
{{- end -}}
{{- if and (eq $w.kind "CronJob") (not $w.cronJob.schedule) -}}
{{- fail (printf "%s.cronJob.schedule is required for kind CronJob" $p) -}}
{{- end -}}
{{- if and (not $longRunning) (not (kindIs "invalid" $raw.replicas)) -}}
{{- fail (printf "%s.replicas is only for Deployment and StatefulSet (%s.kind=%s)" $p $p $w.kind) -}}
{{- end -}}
{{- /* Metrics port must be declared */ -}}
{{- if and $w.metrics.enabled $w.metrics.port (not (hasKey ($w.ports | default dict) $w.metrics.port)) -}}
{{- fail (printf "%s.metrics.port=%s is not one of %s.ports" $p $w.metrics.port $p) -}}
{{- end -}}
{{- if and $w.metrics.enabled (not $w.metrics.port) (not $w.berth.enabled) -}}
{{- fail (printf "%s.metrics.enabled=true needs %s.metrics.port (or berth enabled, to scrape berth itself)" $p $p) -}}
{{- end -}}
{{- range $port := list $w.ingress.port $w.httpRoute.port -}}
{{- if and $port (not (hasKey ($w.ports | default dict) $port)) -}}
{{- fail (printf "%s: route port %q is not one of %s.ports" $p $port $p) -}}
{{- end -}}
{{- end -}}
{{- /* Restricted Pod Security Standard: the main container may not opt out silently */ -}}
{{- $sc := $w.securityContext | default dict -}}
{{- if eq (toString (dig "allowPrivilegeEscalation" true $sc)) "true" -}}
{{- fail (printf "%s.securityContext.allowPrivilegeEscalation must be false (restricted Pod Security Standard)" $p) -}}
{{- end -}}
{{- if eq (toString (dig "privileged" false $sc)) "true" -}}
{{- fail (printf "%s.securityContext.privileged=true is not allowed (restricted Pod Security Standard)" $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
