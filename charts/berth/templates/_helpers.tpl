{{/* Names and labels. */}}

{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: fullnameOverride, else the release name. */}}
{{- define "berth.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/*
objectName (dict "root" $ "name" workload ["plain" true]) -> the name of the
workload's objects: `workloads.<name>.nameOverride`, else <base>-<workload>.
"plain": a name that is not a workload's (secrets, configMaps keyed by name).
*/}}
{{- define "berth.objectName" -}}
{{- $override := "" -}}
{{- if not .plain -}}
{{- $raw := get (.root.Values.workloads | default dict) .name -}}
{{- if kindIs "map" $raw -}}{{- $override = toString ($raw.nameOverride | default "") -}}{{- end -}}
{{- end -}}
{{- if $override -}}{{- $override | trunc 63 | trimSuffix "-" -}}
{{- else -}}{{- printf "%s-%s" (include "berth.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* serviceName (dict "root" $ "name" workload "w" W ["key" servicesKey]) -> the name of the workload's main Service (no key) or of `services.<key>` */}}
{{- define "berth.serviceName" -}}
{{- $objname := include "berth.objectName" (dict "root" .root "name" .name) -}}
{{- if .key -}}
{{- $svc := get (.w.services | default dict) .key | default dict -}}
{{- default (printf "%s-%s" $objname .key | trunc 63 | trimSuffix "-") $svc.nameOverride -}}
{{- else -}}
{{- default $objname .w.service.nameOverride -}}
{{- end -}}
{{- end -}}

{{/* workloadServiceAccount (dict "root" $ "name" workload "w" W) -> the ServiceAccount the workload's pods run as */}}
{{- define "berth.workloadServiceAccount" -}}
{{- $sa := .w.serviceAccount | default dict -}}
{{- if $sa.create -}}{{- default (include "berth.objectName" (dict "root" .root "name" .name)) $sa.name -}}
{{- else if $sa.name -}}{{- $sa.name -}}
{{- else -}}{{- include "berth.serviceAccountName" .root -}}
{{- end -}}
{{- end -}}

{{- define "berth.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* labels (dict "root" $ "name" workload?) */}}
{{- define "berth.labels" -}}
helm.sh/chart: {{ include "berth.chartLabel" .root }}
{{ include "berth.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* selectorLabels (dict "root" $ "name" workload?): a workload's nameOverride is also its app.kubernetes.io/name (guides select on it: `kubectl logs -l app.kubernetes.io/name=myapp-worker`) */}}
{{- define "berth.selectorLabels" -}}
{{- $appName := include "berth.name" .root -}}
{{- if .name -}}
{{- $raw := get (.root.Values.workloads | default dict) .name -}}
{{- if and (kindIs "map" $raw) $raw.nameOverride -}}{{- $appName = $raw.nameOverride -}}{{- end -}}
{{- end -}}
app.kubernetes.io/name: {{ $appName }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}
{{- end -}}

{{/* metadata (dict "root" $ "name" objectName "component" workload "labels" extra "annotations" extra) */}}
{{- define "berth.metadata" -}}
name: {{ .objname }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "berth.labels" (dict "root" .root "name" .name) | nindent 2 }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $ann := merge (deepCopy (.annotations | default dict)) (deepCopy (.root.Values.commonAnnotations | default dict)) }}
{{- with $ann }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "berth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "berth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
workload (dict "root" $ "name" N) -> JSON of `defaults` with
`workloads.<N>` merged over it, plus the berth settings (release-wide
`berth` with the workload's `berth` over it) under `berth`. Strings that
may reference the release (env, envFrom, args, berth env/checks, secret
names) go through tpl.
*/}}
{{- define "berth.workload" -}}
{{- $root := .root -}}
{{- $w := mustMergeOverwrite (deepCopy $root.Values.defaults) (deepCopy (get $root.Values.workloads .name)) -}}
{{- $raw := get $root.Values.workloads .name | default dict -}}
{{- /* A key set to null in the workload removes the key it inherits from `defaults` (or the release-wide berth block): keyed maps merge, so this is how an entry is dropped. */ -}}
{{- range $field := list "env" "ports" "volumes" "sidecars" "initContainers" "podAnnotations" "podLabels" "labels" "annotations" "nodeSelector" -}}
{{- range $k, $v := (get $raw $field | default dict) -}}
{{- if kindIs "invalid" $v -}}{{- $_ := unset (get $w $field) $k -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $b := mustMergeOverwrite (deepCopy $root.Values.berth) (deepCopy ($w.berth | default dict)) -}}
{{- range $field := list "env" "checks" "secretFiles" -}}
{{- range $k, $v := (dig "berth" $field dict $raw | default dict) -}}
{{- if kindIs "invalid" $v -}}{{- $_ := unset (get $b $field) $k -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if $b.env -}}{{- $_ := set $b "env" (tpl (toYaml $b.env) $root | fromYaml) -}}{{- end -}}
{{- if $b.checks -}}{{- $_ := set $b "checks" (tpl (toYaml $b.checks) $root | fromYaml) -}}{{- end -}}
{{- if $b.secretFiles -}}{{- $_ := set $b "secretFiles" (tpl (toYaml $b.secretFiles) $root | fromYaml) -}}{{- end -}}
{{- if $b.envFrom -}}{{- $_ := set $b "envFrom" (tpl (toYaml $b.envFrom) $root | fromYamlArray) -}}{{- end -}}
{{- /* Jobs gate their start with `berth wait` unless told otherwise. */ -}}
{{- if and (has $w.kind (list "Job" "CronJob")) (not (hasKey (dig "berth" "wait" dict (get $root.Values.workloads .name)) "enabled")) -}}
{{- $_ := set $b "wait" (merge (dict "enabled" true) ($b.wait | default dict)) -}}
{{- end -}}
{{- /* Per-workload probe switches map onto berth's defaults for the main container. */ -}}
{{- $mp := $b.mainProbes | default dict -}}
{{- range $p := list "startup" "liveness" "readiness" -}}
{{- $cfg := get ($w.probes | default dict) $p | default dict -}}
{{- $cur := get $mp $p | default dict -}}
{{- $en := and (ne (toString (dig "enabled" true $cur)) "false") (ne (toString (dig "enabled" true $cfg)) "false") (empty (dig "custom" dict $cfg)) -}}
{{- $_ := set $cur "enabled" $en -}}
{{- /* probes.<p> may carry the app's own timings (initialDelaySeconds, ...): they apply to berth's default probe. */ -}}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" -}}
{{- if hasKey $cfg $k -}}{{- $_ := set $cur $k (get $cfg $k) -}}{{- end -}}
{{- end -}}
{{- $_ := set $mp $p $cur -}}
{{- end -}}
{{- $_ := set $b "mainProbes" $mp -}}
{{- $_ := set $w "berth" $b -}}
{{- if $w.env -}}{{- $_ := set $w "env" (tpl (toYaml $w.env) $root | fromYaml) -}}{{- end -}}
{{- if $w.envFrom -}}{{- $_ := set $w "envFrom" (tpl (toYaml $w.envFrom) $root | fromYamlArray) -}}{{- end -}}
{{- if $w.args -}}{{- $_ := set $w "args" (tpl (toYaml $w.args) $root | fromYamlArray) -}}{{- end -}}
{{- if $w.volumes -}}{{- $_ := set $w "volumes" (tpl (toYaml $w.volumes) $root | fromYaml) -}}{{- end -}}
{{- toJson $w -}}
{{- end -}}

{{/* enabledWorkloads -> JSON list of enabled workload names, sorted. */}}
{{- define "berth.enabledWorkloads" -}}
{{- $out := list -}}
{{- range $name := keys .Values.workloads | sortAlpha -}}
{{- $w := get $.Values.workloads $name | default dict -}}
{{- if ne (toString (dig "enabled" $.Values.defaults.enabled $w)) "false" -}}{{- $out = append $out $name -}}{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* image (dict "root" $ "image" I) -> the main image reference; tag defaults to appVersion. */}}
{{- define "berth.image" -}}
{{- $i := deepCopy .image -}}
{{- if not $i.tag -}}{{- $_ := set $i "tag" .root.Chart.AppVersion -}}{{- end -}}
{{- include "berth-lib.image" (dict "image" $i) -}}
{{- end -}}

{{/* berthPath (name) -> the values path of a workload's berth settings, for messages */}}
{{- define "berth.berthPath" -}}
{{- printf "workloads.%s.berth" . -}}
{{- end -}}

{{/*
servicePorts (dict "root" $ "name" N "w" W ["key" K]) -> JSON list of the
ports of the workload's main Service (no key) or of `services.<K>`.
Main Service: every workload port not marked `service: false`, on
`ports.<p>.servicePort` (default: the container port), targetPort the
port's name. `services.<K>.ports` (keyed by Service port name): `port`
(default: the container port it targets), `targetPort` (a name of the
workload's `ports`, default the key; or a number), `protocol`, `nodePort`,
`appProtocol`; empty: the same ports as the main Service. berth's health port
joins when exposeBerth says so; the lifecycle port never does.
*/}}
{{- define "berth.servicePorts" -}}
{{- $w := .w -}}
{{- $name := .name -}}
{{- $svc := $w.service -}}
{{- $path := printf "workloads.%s.service" $name -}}
{{- if .key -}}{{- $svc = get ($w.services | default dict) .key | default dict -}}{{- $path = printf "workloads.%s.services.%s" $name .key -}}{{- end -}}
{{- $wports := $w.ports | default dict -}}
{{- $ports := list -}}
{{- if and .key $svc.ports -}}
{{- range $sname := keys $svc.ports | sortAlpha -}}
{{- $sp := get $svc.ports $sname | default dict -}}
{{- $target := $sp.targetPort | default $sname -}}
{{- $entry := dict "name" $sname -}}
{{- if kindIs "string" $target -}}
{{- if not (hasKey $wports $target) -}}
{{- fail (printf "%s.ports.%s.targetPort=%s is not one of workloads.%s.ports (a Service reaches the workload's own ports: name one, or give a number)" $path $sname $target $name) -}}
{{- end -}}
{{- $cp := get $wports $target -}}
{{- $_ := set $entry "targetPort" $target -}}
{{- $_ := set $entry "port" (int ($sp.port | default $cp.port)) -}}
{{- $_ := set $entry "protocol" ($sp.protocol | default $cp.protocol | default "TCP") -}}
{{- else -}}
{{- if has (int $target) (list (int (dig "lifecycle" "port" 8643 $w.berth)) (int $w.berth.port)) -}}
{{- fail (printf "%s.ports.%s.targetPort=%d is a berth port: the lifecycle port is never on a Service, and berth's health port joins through %s.exposeBerth=true" $path $sname (int $target) $path) -}}
{{- end -}}
{{- $_ := set $entry "targetPort" (int $target) -}}
{{- $_ := set $entry "port" (int ($sp.port | default $target)) -}}
{{- $_ := set $entry "protocol" ($sp.protocol | default "TCP") -}}
{{- end -}}
{{- with $sp.nodePort -}}{{- $_ := set $entry "nodePort" (int .) -}}{{- end -}}
{{- with $sp.appProtocol -}}{{- $_ := set $entry "appProtocol" . -}}{{- end -}}
{{- $ports = append $ports $entry -}}
{{- end -}}
{{- else -}}
{{- range $pname := keys $wports | sortAlpha -}}
{{- $p := get $wports $pname -}}
{{- if ne (toString (dig "service" true $p)) "false" -}}
{{- $ports = append $ports (dict "name" $pname "port" (int ($p.servicePort | default $p.port)) "targetPort" $pname "protocol" ($p.protocol | default "TCP")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $expose := $svc.exposeBerth -}}
{{- /* Unset: a cluster-internal main Service only. NodePort and LoadBalancer reach outside the cluster, where berth's health detail has no business; extra Services (`services`) only when asked. */ -}}
{{- if kindIs "invalid" $expose -}}{{- $expose = and (not .key) (eq (toString ($svc.type | default "ClusterIP")) "ClusterIP") -}}{{- end -}}
{{- if and $w.berth.enabled $expose (ne (include "berth-lib.placement" (dict "root" .root "settings" (include "berth-lib.settings" (dict "settings" $w.berth) | fromJson) "path" (include "berth.berthPath" .name) "kind" $w.kind)) "none") -}}
{{- $ports = append $ports (dict "name" "berth" "port" (int $w.berth.port) "targetPort" "berth" "protocol" "TCP") -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{/* hasService (dict root name w) -> "true" when a Service is rendered for the workload */}}
{{- define "berth.hasService" -}}
{{- if and .w.service.enabled (has .w.kind (list "Deployment" "StatefulSet" "DaemonSet")) (include "berth.servicePorts" . | fromJsonArray) -}}true{{- end -}}
{{- end -}}

{{/*
networkPolicy.rule (dict "port" P "protocol" T "from" F "default" D) -> one
ingress rule (JSON), or {} when the port is open to nobody. F unset: the
peers D (empty: everyone); F a list: exactly those peers; F []: nobody.
*/}}
{{- define "berth.networkPolicy.rule" -}}
{{- $from := .from -}}
{{- if kindIs "invalid" $from -}}{{- $from = .default | default list -}}{{- else if not $from -}}{{- $from = "nobody" -}}{{- end -}}
{{- if eq (toString $from) "nobody" -}}{}
{{- else -}}
{{- $rule := dict "ports" (list (dict "port" .port "protocol" .protocol)) -}}
{{- if $from -}}{{- $_ := set $rule "from" $from -}}{{- end -}}
{{- toJson $rule -}}
{{- end -}}
{{- end -}}
