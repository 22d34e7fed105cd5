{{/*
Cross-field rules that values.schema.json cannot express. Each failure
names the value to change. Called once from workloads.yaml.
(The grace-period, check and drain rules live in berth-lib, which runs them
for every chart that uses it.)
*/}}
{{- define "berth.validate" -}}
{{- if .Values.defaults.nameOverride -}}
{{- fail (printf "defaults.nameOverride=%s would give every workload the same name: set workloads.<name>.nameOverride per workload" .Values.defaults.nameOverride) -}}
{{- end -}}
{{- $selectorKeys := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" -}}
{{- $chartKeys := concat $selectorKeys (list "helm.sh/chart" "app.kubernetes.io/version" "app.kubernetes.io/managed-by") -}}
{{- range $k := keys (.Values.commonLabels | default dict) | sortAlpha -}}
{{- if has $k $chartKeys -}}
{{- fail (printf "commonLabels.%s is one of the chart's own labels (%s): it would render a duplicate key; choose another label" $k (join ", " $chartKeys)) -}}
{{- end -}}
{{- end -}}
{{- $names := dict -}}
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
{{- /* Names: a workload's objects and Services must not collide with another's */ -}}
{{- $objname := include "berth.objectName" (dict "root" $ "name" $name) -}}
{{- $own := list (printf "workload %s" $objname) -}}
{{- if include "berth.hasService" (dict "root" $ "name" $name "w" $w) -}}{{- $own = append $own (printf "Service %s" (include "berth.serviceName" (dict "root" $ "name" $name "w" $w))) -}}{{- end -}}
{{- range $key := keys ($w.services | default dict) | sortAlpha -}}
{{- if get $w.services $key -}}{{- $own = append $own (printf "Service %s" (include "berth.serviceName" (dict "root" $ "name" $name "w" $w "key" $key))) -}}{{- end -}}
{{- end -}}
{{- range $n := $own -}}
{{- if hasKey $names $n -}}
{{- fail (printf "%s: the name of %s is already used by workloads.%s: set %s.nameOverride (or the Service's nameOverride) to tell them apart" $p $n (get $names $n) $p) -}}
{{- end -}}
{{- $_ := set $names $n $name -}}
{{- end -}}
{{- /* Labels: one of the chart's own keys would render twice (a duplicate YAML key; on a pod it would also fight the selector) */ -}}
{{- range $k := keys ($w.podLabels | default dict) | sortAlpha -}}
{{- if has $k $selectorKeys -}}
{{- fail (printf "%s.podLabels.%s is a selector label the chart sets itself (%s): a second value would render a duplicate key and break the selector; use another key (e.g. app: ...)" $p $k (join ", " $selectorKeys)) -}}
{{- end -}}
{{- end -}}
{{- $labelSets := dict "labels" $w.labels "service.labels" $w.service.labels -}}
{{- range $key := keys ($w.services | default dict) -}}{{- $_ := set $labelSets (printf "services.%s.labels" $key) (dig "labels" dict (get $w.services $key | default dict)) -}}{{- end -}}
{{- range $key := keys ($w.volumeClaimTemplates | default dict) -}}{{- $_ := set $labelSets (printf "volumeClaimTemplates.%s.labels" $key) (dig "labels" dict (get $w.volumeClaimTemplates $key | default dict)) -}}{{- end -}}
{{- range $where := keys $labelSets | sortAlpha -}}
{{- range $k := keys (get $labelSets $where | default dict) | sortAlpha -}}
{{- if has $k $chartKeys -}}
{{- fail (printf "%s.%s.%s is one of the chart's own labels (%s): it would render a duplicate key; use another key" $p $where $k (join ", " $chartKeys)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Container port names are IANA service names (Kubernetes rejects others at apply time) */ -}}
{{- range $pname := keys ($w.ports | default dict) | sortAlpha -}}
{{- if gt (len $pname) 15 -}}
{{- fail (printf "%s.ports.%s: a container port name has at most 15 characters (IANA service name; this one has %d): shorten it" $p $pname (len $pname)) -}}
{{- end -}}
{{- if or (contains "--" $pname) (not (regexMatch "[a-z]" $pname)) -}}
{{- fail (printf "%s.ports.%s: a container port name needs at least one letter and no '--' (IANA service name)" $p $pname) -}}
{{- end -}}
{{- end -}}
{{- /* Services */ -}}
{{- range $key := keys ($w.services | default dict) | sortAlpha -}}
{{- $svc := get $w.services $key -}}
{{- if $svc -}}
{{- if not (has $w.kind (list "Deployment" "StatefulSet" "DaemonSet")) -}}
{{- fail (printf "%s.services.%s: Services are for long-running workloads, not a %s (%s.kind)" $p $key $w.kind $p) -}}
{{- end -}}
{{- if and $svc.headless $svc.type (ne (toString $svc.type) "ClusterIP") -}}
{{- fail (printf "%s.services.%s.headless=true needs type ClusterIP (%s.services.%s.type=%s)" $p $key $p $key $svc.type) -}}
{{- end -}}
{{- range $sp, $spec := ($svc.ports | default dict) -}}
{{- if and (dig "nodePort" nil ($spec | default dict)) (not (has (toString ($svc.type | default "ClusterIP")) (list "NodePort" "LoadBalancer"))) -}}
{{- fail (printf "%s.services.%s.ports.%s.nodePort needs %s.services.%s.type NodePort or LoadBalancer" $p $key $sp $p $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $w.serviceName -}}
{{- if ne $w.kind "StatefulSet" -}}
{{- fail (printf "%s.serviceName is for a StatefulSet (%s.kind=%s)" $p $p $w.kind) -}}
{{- end -}}
{{- $gov := get ($w.services | default dict) $w.serviceName -}}
{{- if not $gov -}}
{{- fail (printf "%s.serviceName=%s is not a key of %s.services" $p $w.serviceName $p) -}}
{{- end -}}
{{- if not $gov.headless -}}
{{- fail (printf "%s.serviceName=%s: the governing Service gives each pod its DNS name and must be headless: set %s.services.%s.headless=true" $p $w.serviceName $p $w.serviceName) -}}
{{- end -}}
{{- end -}}
{{- /* CronJob schedule and time zone: Kubernetes accepts 5 fields or a macro; a wrong one renders, then the API server refuses it */ -}}
{{- if eq $w.kind "CronJob" -}}
{{- $sched := toString ($w.cronJob.schedule | default "") | trim -}}
{{- if regexMatch "^(CRON_)?TZ=" $sched -}}
{{- fail (printf "%s.cronJob.schedule=%q: Kubernetes refuses TZ= in a schedule; set %s.cronJob.timeZone instead" $p $sched $p) -}}
{{- end -}}
{{- $macro := regexMatch "^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$" $sched -}}
{{- $every := regexMatch "^@every ([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" $sched -}}
{{- $fields := regexSplit "\\s+" $sched -1 -}}
{{- $fieldsOK := and (eq (len $fields) 5) (regexMatch "^[0-9A-Za-z*/,?#-]+( [0-9A-Za-z*/,?#-]+){4}$" (join " " $fields)) -}}
{{- if and $sched (not (or $macro $every $fieldsOK)) -}}
{{- fail (printf "%s.cronJob.schedule=%q is not a cron schedule: use 5 fields (minute hour day-of-month month day-of-week, e.g. 0 2 * * *; this one has %d) or a macro such as @hourly, @daily, @weekly" $p $sched (len $fields)) -}}
{{- end -}}
{{- with $w.cronJob.timeZone -}}
{{- $tz := toString . -}}
{{- if or (not (regexMatch "^([A-Za-z]+|[A-Za-z]+(/[A-Za-z0-9_+-]+)+)$" $tz)) (eq $tz "Local") -}}
{{- fail (printf "%s.cronJob.timeZone=%q is not an IANA time zone name: use e.g. UTC, Europe/Berlin or, for a fixed offset, Etc/GMT-2 (POSIX sign: Etc/GMT-2 is UTC+2)" $p $tz) -}}
{{- end -}}
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
