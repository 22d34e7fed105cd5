{{/*
berth-lib: settings, durations and the native-sidecar decision.

Every named template of this library takes a dict. The common keys:
  root      the top-level context ($)
  settings  the berth settings block of the pod (any subset of
            "berth-lib.defaults"; merged over the defaults here)
  path      where the settings live in the caller's values, e.g.
            "workloads.api.berth"; every fail message starts with it so the
            user knows which value to fix
*/}}

{{/*
The defaults of a berth settings block. Documented field by field in this
chart's values.yaml (`berth:`), which must stay in sync with this template.
*/}}
{{- define "berth-lib.defaults" -}}
enabled: true
image:
  registry: ghcr.io
  repository: berth-dev/berth
  tag: "0.1.0"
  digest: ""
  pullPolicy: IfNotPresent
sidecar: auto
port: 8642
logFormat: json
logLevel: info
resources:
  requests:
    cpu: 10m
    memory: 16Mi
    ephemeral-storage: 16Mi
  limits:
    cpu: 200m
    memory: 64Mi
    ephemeral-storage: 64Mi
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  privileged: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
env: {}
envFrom: []
secretFiles: {}
token: ""
checks: {}
groups: {}
grpcPort: 0
startup:
  waitFor: []
  gate: true
  periodSeconds: 2
  failureThreshold: 150
drain:
  delay: 5s
  timeout: 45s
  notify:
    type: none
  waitUntilDown: []
mainProbes:
  startup:
    enabled: true
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 30
  liveness:
    enabled: true
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readiness:
    enabled: true
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 3
preStop: true
lifecycle:
  port: 8643
  token: ""
wait:
  enabled: false
  timeout: 60s
{{- end -}}

{{/* settings (dict "settings" S) -> JSON of the defaults with S merged over them. */}}
{{- define "berth-lib.settings" -}}
{{- $defaults := include "berth-lib.defaults" . | fromYaml -}}
{{- $user := .settings | default dict -}}
{{- mustMergeOverwrite $defaults (deepCopy $user) | toJson -}}
{{- end -}}

{{/*
seconds (dict "value" "45s" "path" "x.drain.timeout") -> whole seconds,
rounded up. Durations are berth's: an integer followed by ms, s, m or h.
*/}}
{{- define "berth-lib.seconds" -}}
{{- $v := toString .value -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)$" $v) -}}
{{- fail (printf "%s=%q is not a duration: use an integer with ms, s, m or h (e.g. 500ms, 5s, 1m)" .path $v) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $v | atoi -}}
{{- $unit := regexFind "(ms|s|m|h)$" $v -}}
{{- if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" -}}{{ $n }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else -}}{{ mul $n 3600 }}
{{- end -}}
{{- end -}}

{{/* milliseconds (dict "value" "500ms" "path" P) -> whole milliseconds. */}}
{{- define "berth-lib.millis" -}}
{{- $v := toString .value -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)$" $v) -}}
{{- fail (printf "%s=%q is not a duration: use an integer with ms, s, m or h (e.g. 500ms, 5s, 1m)" .path $v) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $v | atoi -}}
{{- $unit := regexFind "(ms|s|m|h)$" $v -}}
{{- if eq $unit "ms" -}}{{ $n }}
{{- else if eq $unit "s" -}}{{ mul $n 1000 }}
{{- else if eq $unit "m" -}}{{ mul $n 60000 }}
{{- else -}}{{ mul $n 3600000 }}
{{- end -}}
{{- end -}}

{{/*
placement (dict "root" $ "settings" S "path" P "kind" K) -> "native",
"regular" or "none": where the berth container goes.

sidecar: auto picks a native sidecar (initContainer with restartPolicy:
Always) when the cluster is 1.29 or newer, where the feature is on by
default, and a regular container below. A Job or CronJob never gets a
regular sidecar: the pod would never complete, because a regular berth
container does not exit when the main container does. Those pods use the
`berth wait` init container as their gate instead.
*/}}
{{- define "berth-lib.placement" -}}
{{- $s := .settings -}}
{{- $batch := has (.kind | default "Deployment") (list "Job" "CronJob") -}}
{{- $nativeOK := semverCompare ">=1.29.0-0" .root.Capabilities.KubeVersion.Version -}}
{{- if not $s.enabled -}}none
{{- else if eq $s.sidecar "none" -}}none
{{- else if eq $s.sidecar "native" -}}native
{{- else if eq $s.sidecar "regular" -}}
{{- if $batch -}}
{{- fail (printf "%s.sidecar=regular is not allowed on a %s: a regular berth container never exits, so the pod would never complete; use auto, native or none (the `berth wait` init container still gates the start)" .path .kind) -}}
{{- end -}}regular
{{- else if eq $s.sidecar "auto" -}}
{{- if $nativeOK -}}native{{- else if $batch -}}none{{- else -}}regular{{- end -}}
{{- else -}}
{{- fail (printf "%s.sidecar=%q: use auto, native, regular or none" .path (toString $s.sidecar)) -}}
{{- end -}}
{{- end -}}

{{/* image (dict "image" I) -> registry/repository:tag[@digest] */}}
{{- define "berth-lib.image" -}}
{{- $i := .image -}}
{{- $repo := $i.repository -}}
{{- if $i.registry -}}{{- $repo = printf "%s/%s" $i.registry $i.repository -}}{{- end -}}
{{- if $i.digest -}}{{ printf "%s:%s@%s" $repo (toString $i.tag) $i.digest }}
{{- else -}}{{ printf "%s:%s" $repo (toString $i.tag) }}
{{- end -}}
{{- end -}}

{{/*
minGrace (dict "settings" S "path" P) -> drain.delay + drain.timeout + 5,
in seconds: the shortest terminationGracePeriodSeconds that lets berth's
preStop finish and still leaves the app 5 s after its SIGTERM.
*/}}
{{- define "berth-lib.minGrace" -}}
{{- $d := include "berth-lib.seconds" (dict "value" .settings.drain.delay "path" (printf "%s.drain.delay" .path)) | atoi -}}
{{- $t := include "berth-lib.seconds" (dict "value" .settings.drain.timeout "path" (printf "%s.drain.timeout" .path)) | atoi -}}
{{- add $d $t 5 -}}
{{- end -}}
