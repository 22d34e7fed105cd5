{{/* Names and labels. */}}

{{- define "berth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: fullnameOverride, else the release name. */}}
{{- define "berth.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* objectName (dict "root" $ "name" workload) -> <base>-<workload> */}}
{{- define "berth.objectName" -}}
{{- printf "%s-%s" (include "berth.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
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

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "berth.name" .root }}
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

{{/* hasPorts: "true" when the workload declares a port meant for the Service, or exposes berth */}}
{{- define "berth.servicePorts" -}}
{{- $w := .w -}}
{{- $ports := list -}}
{{- range $pname := keys ($w.ports | default dict) | sortAlpha -}}
{{- $p := get $w.ports $pname -}}
{{- if ne (toString (dig "service" true $p)) "false" -}}
{{- $ports = append $ports (dict "name" $pname "port" (int $p.port) "targetPort" $pname "protocol" ($p.protocol | default "TCP")) -}}
{{- end -}}
{{- end -}}
{{- $expose := $w.service.exposeBerth -}}
{{- /* Unset: a cluster-internal Service only. NodePort and LoadBalancer reach outside the cluster, where berth's health detail has no business. */ -}}
{{- if kindIs "invalid" $expose -}}{{- $expose = eq (toString ($w.service.type | default "ClusterIP")) "ClusterIP" -}}{{- end -}}
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
