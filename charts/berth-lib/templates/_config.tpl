{{/*
berth-lib: the berth configuration file (berth.yaml) and its ConfigMap.

Secrets never go into the ConfigMap: a check's url/address may only carry a
password as `${VAR}` (an env var the sidecar gets from a Secret through
`env.<NAME>.valueFrom.secretKeyRef`) or `${file:/etc/berth/secret/<name>}`
(a Secret key projected by `secretFiles`). A literal password fails the
render with a message naming the check.
*/}}

{{- /* berth-lib.checkTypes and berth-lib.checkKeys: _checks.tpl, generated from `berth schema`. */ -}}

{{/*
checks (dict "settings" S "path" P) -> JSON list of enabled checks, sorted by
name, each validated.
*/}}
{{- define "berth-lib.checks" -}}
{{- $s := .settings -}}
{{- $types := include "berth-lib.checkTypes" . | fromYaml -}}
{{- $out := list -}}
{{- range $name := keys ($s.checks | default dict) | sortAlpha -}}
{{- $c := get $s.checks $name | default dict -}}
{{- $p := printf "%s.checks.%s" $.path $name -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$" $name) -}}
{{- fail (printf "%s: check names are lower-case letters, digits, '-' and '_'" $p) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" (get $s.checks $name))) (ne (toString (dig "enabled" true $c)) "false") -}}
{{- $type := toString ($c.type | default "") -}}
{{- if not (hasKey $types $type) -}}
{{- fail (printf "%s.type=%q: use one of postgres, redis, tcp, http, https, file, process" $p $type) -}}
{{- end -}}
{{- $target := get $types $type -}}
{{- $specific := get (include "berth-lib.checkKeys" . | fromYaml) $type -}}
{{- $allowed := concat (list "type" "enabled" "critical" "interval" "timeout" "failureThreshold" "successThreshold") $specific -}}
{{- range $k := keys $c | sortAlpha -}}
{{- if not (has $k $allowed) -}}
{{- fail (printf "%s.%s is not a setting of a %s check (it takes %s)" $p $k $type (join ", " $specific)) -}}
{{- end -}}
{{- end -}}
{{- if not (get $c $target) -}}
{{- fail (printf "%s.%s is required for a %s check" $p $target $type) -}}
{{- end -}}
{{- range $field := list "url" "address" -}}
{{- $v := toString (get $c $field | default "") -}}
{{- $userinfo := regexFind "^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@" $v -}}
{{- if and $userinfo (contains ":" (trimPrefix "//" (regexFind "//.*" $userinfo))) (not (contains "${" $userinfo)) -}}
{{- fail (printf "%s.%s carries a literal password, which would land in a ConfigMap: write it as ${VAR} (env from a Secret via secretKeyRef) or ${file:/etc/berth/secret/NAME}" $p $field) -}}
{{- end -}}
{{- end -}}
{{- /* A ${VAR} that berth's own env does not define makes berth exit 64 at start (crash loop): fail here instead. */ -}}
{{- if not $s.envFrom -}}
{{- range $field := list "url" "address" "path" "command" -}}
{{- range $ref := regexFindAll "(^|[^$])\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" (toString (get $c $field | default "")) -1 -}}
{{- $var := regexFind "[A-Za-z_][A-Za-z0-9_]*" (regexFind "\\{.*" $ref) -}}
{{- if not (hasKey ($s.env | default dict) $var) -}}
{{- fail (printf "%s.%s uses ${%s}, but the berth container has no env %s (berth would exit 64 at start): set berth.env.%s (or the workload's berth.env.%s), e.g. {valueFrom: {secretKeyRef: {name: ..., key: ...}}}" $p $field $var $var $var $var) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* URL shapes berth refuses at start (exit 64): caught here, naming the value. */ -}}
{{- $url := toString ($c.url | default "") -}}
{{- if and (eq $type "http") (hasPrefix "https://" (lower $url)) -}}
{{- fail (printf "%s.url=%q: an http check speaks plain HTTP and berth refuses https:// URLs (it would exit 64 at start); set %s.type=https (TLS, with caFile for a private CA), or check the app over http:// on its plain port" $p $url $p) -}}
{{- end -}}
{{- if and (eq $type "http") (not (hasPrefix "${" $url)) (not (regexMatch "^(?i)http://[^/?#]+" $url)) -}}
{{- fail (printf "%s.url=%q is not an http:// URL with a host (e.g. http://127.0.0.1:8080/healthz)" $p $url) -}}
{{- end -}}
{{- /* PostgreSQL URLs: postgres:// or postgresql://, also with a driver suffix as SQLAlchemy writes them (postgresql+asyncpg://, postgresql+psycopg://), which berth strips. */ -}}
{{- if and (eq $type "postgres") (contains "://" $url) (not (hasPrefix "${" $url)) (not (regexMatch "^(?i)postgres(ql)?(\\+[a-z0-9_]+)?://" $url)) -}}
{{- fail (printf "%s.url: a postgres check takes a postgres:// or postgresql:// URL (a driver suffix such as postgresql+asyncpg:// is fine), not %s" $p (regexFind "^[^:]*://" $url)) -}}
{{- end -}}
{{- $interval := include "berth-lib.millis" (dict "value" ($c.interval | default "5s") "path" (printf "%s.interval" $p)) | atoi -}}
{{- $timeout := include "berth-lib.millis" (dict "value" ($c.timeout | default "2s") "path" (printf "%s.timeout" $p)) | atoi -}}
{{- if ge $timeout $interval -}}
{{- fail (printf "%s.timeout=%s must be shorter than %s.interval=%s" $p (toString ($c.timeout | default "2s")) $p (toString ($c.interval | default "5s"))) -}}
{{- end -}}
{{- if hasKey $c "maxAge" -}}
{{- $_ := include "berth-lib.millis" (dict "value" $c.maxAge "path" (printf "%s.maxAge" $p)) -}}
{{- end -}}
{{- $check := dict "name" $name -}}
{{- range $k, $v := $c -}}
{{- if ne $k "enabled" -}}{{- $_ := set $check $k $v -}}{{- end -}}
{{- end -}}
{{- $out = append $out $check -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
isLocal (dict "check" C) -> "true" when the check watches the pod itself
(the main container's port, a heartbeat file, a process) rather than a
dependency: such a check cannot pass before the main container runs.
*/}}
{{- define "berth-lib.isLocal" -}}
{{- $c := .check -}}
{{- $type := toString $c.type -}}
{{- if has $type (list "file" "process") -}}true
{{- else -}}
{{- $target := toString (coalesce $c.url $c.address "") -}}
{{- $host := regexReplaceAll "^([a-zA-Z][a-zA-Z0-9+.-]*://)?([^/@]*@)?" $target "" -}}
{{- if regexMatch "^(127\\.[0-9.]+|localhost|\\[::1\\]|0\\.0\\.0\\.0)(:|/|$)" $host -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
gate (dict "root" $ "settings" S "path" P "placement" X) -> JSON list of the
checks the startup gate waits for, or [] when nothing gates the start.

The gate holds the main container back when berth is a native sidecar whose
startupProbe is the gate (startup.gate) or when a `berth wait` init
container runs (wait.enabled). A check on the pod itself (see isLocal) can
only pass once the main container runs, so:
  - an explicit startup.waitFor naming one fails the render (it would
    deadlock the pod);
  - with no startup.waitFor, the gate waits for the critical checks that
    are dependencies, and nothing at all when there are none.
*/}}
{{- define "berth-lib.gate" -}}
{{- $s := .settings -}}
{{- $gated := or (and (eq .placement "native") $s.startup.gate) (and $s.enabled $s.wait.enabled) -}}
{{- $out := list -}}
{{- if $gated -}}
{{- $checks := include "berth-lib.checks" . | fromJsonArray -}}
{{- if $s.startup.waitFor -}}
{{- range $c := $checks -}}
{{- if and (has $c.name $s.startup.waitFor) (include "berth-lib.isLocal" (dict "check" $c)) -}}
{{- fail (printf "%s.startup.waitFor names %q, a %s check on the pod itself: the startup gate holds the main container until waitFor passes, so it would never start; list only dependencies there (or set %s.startup.gate=false)" $.path $c.name (toString $c.type) $.path) -}}
{{- end -}}
{{- end -}}
{{- $out = $s.startup.waitFor -}}
{{- else -}}
{{- range $c := $checks -}}
{{- if and (ne (toString (dig "critical" true $c)) "false") (not (include "berth-lib.isLocal" (dict "check" $c))) -}}
{{- $out = append $out $c.name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* grpcPort (dict "settings" S "path" P ...) -> the gRPC health port, or "" when off; fails when it collides with berth's other ports. */}}
{{- define "berth-lib.grpcPort" -}}
{{- $p := int (.settings.grpcPort | default 0) -}}
{{- if gt $p 0 -}}
{{- if eq $p (int .settings.port) -}}
{{- fail (printf "%s.grpcPort=%d is berth's health port (%s.port): gRPC health needs a port of its own" .path $p .path) -}}
{{- end -}}
{{- if eq $p (include "berth-lib.lifecycle.port" . | atoi) -}}
{{- fail (printf "%s.grpcPort=%d is berth's lifecycle port: gRPC health needs a port of its own" .path $p) -}}
{{- end -}}
{{- $p -}}
{{- end -}}
{{- end -}}

{{/*
config (dict "root" $ "settings" S "path" P "placement" native|regular|none)
-> the berth.yaml text.
*/}}
{{- define "berth-lib.config" -}}
{{- $s := .settings -}}
{{- $checks := include "berth-lib.checks" . | fromJsonArray -}}
{{- $names := list -}}
{{- range $checks -}}{{- $names = append $names .name -}}{{- end -}}
{{- range $w := $s.startup.waitFor | default list -}}
{{- if not (has $w $names) -}}
{{- fail (printf "%s.startup.waitFor names %q, which is not an enabled check in %s.checks" $.path $w $.path) -}}
{{- end -}}
{{- end -}}
{{- range $w := $s.drain.waitUntilDown | default list -}}
{{- if not (has $w $names) -}}
{{- fail (printf "%s.drain.waitUntilDown names %q, which is not an enabled check in %s.checks" $.path $w $.path) -}}
{{- end -}}
{{- end -}}
{{- $delayMs := include "berth-lib.millis" (dict "value" $s.drain.delay "path" (printf "%s.drain.delay" .path)) | atoi -}}
{{- $timeoutMs := include "berth-lib.millis" (dict "value" $s.drain.timeout "path" (printf "%s.drain.timeout" .path)) | atoi -}}
{{- if le $timeoutMs $delayMs -}}
{{- fail (printf "%s.drain.timeout=%s must be greater than %s.drain.delay=%s: the timeout bounds the whole drain, delay included (berth would exit 64 at start)" .path (toString $s.drain.timeout) .path (toString $s.drain.delay)) -}}
{{- end -}}
{{- $notify := $s.drain.notify | default (dict "type" "none") -}}
{{- if not (has (toString $notify.type) (list "none" "signal" "http")) -}}
{{- fail (printf "%s.drain.notify.type=%q: use none, signal or http" .path (toString $notify.type)) -}}
{{- end -}}
{{- if and (eq $notify.type "signal") (not $notify.process) -}}
{{- fail (printf "%s.drain.notify.process is required when %s.drain.notify.type=signal" .path .path) -}}
{{- end -}}
{{- if and (eq $notify.type "http") (not $notify.url) -}}
{{- fail (printf "%s.drain.notify.url is required when %s.drain.notify.type=http" .path .path) -}}
{{- end -}}
{{- $cfg := dict "listen" (printf "0.0.0.0:%d" (int $s.port)) "mode" (ternary "native" "regular" (eq .placement "native")) -}}
{{- if $s.token -}}
{{- if not (contains "${" (toString $s.token)) -}}
{{- fail (printf "%s.token is a literal, which would land in a ConfigMap: write it as ${VAR} (env from a Secret) or ${file:/etc/berth/secret/NAME} (secretFiles)" .path) -}}
{{- end -}}
{{- $_ := set $cfg "token" $s.token -}}
{{- end -}}
{{- $_ := set $cfg "checks" $checks -}}
{{- range $g := keys ($s.groups | default dict) | sortAlpha -}}
{{- range $m := get $s.groups $g | default list -}}
{{- if not (has $m $names) -}}
{{- fail (printf "%s.groups.%s names %q, which is not an enabled check in %s.checks" $.path $g (toString $m) $.path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with $s.groups -}}{{- $_ := set $cfg "groups" . -}}{{- end -}}
{{- with (include "berth-lib.grpcPort" .) -}}{{- $_ := set $cfg "grpcListen" (printf "0.0.0.0:%s" .) -}}{{- end -}}
{{- $gate := include "berth-lib.gate" . | fromJsonArray -}}
{{- if $gate -}}
{{- $_ := set $cfg "startup" (dict "waitFor" $gate) -}}
{{- else if $s.startup.waitFor -}}
{{- $_ := set $cfg "startup" (dict "waitFor" $s.startup.waitFor) -}}
{{- end -}}
{{- $drain := dict "delay" $s.drain.delay "timeout" $s.drain.timeout "notify" $notify -}}
{{- if $s.drain.waitUntilDown -}}{{- $_ := set $drain "waitUntilDown" $s.drain.waitUntilDown -}}{{- end -}}
{{- $_ := set $cfg "drain" $drain -}}
{{- if ne .placement "none" -}}
{{- $_ := set $cfg "lifecycle" (dict "listen" (printf "0.0.0.0:%s" (include "berth-lib.lifecycle.port" .)) "token" "${BERTH_LIFECYCLE_TOKEN}") -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
configMap (dict "root" $ "name" N "settings" S "path" P "kind" K
           "labels" L "annotations" A)
-> a ConfigMap holding berth.yaml, or nothing when berth is off for the pod.
*/}}
{{- define "berth-lib.configMap" -}}
{{- $s := include "berth-lib.settings" . | fromJson -}}
{{- $path := .path | default "berth" -}}
{{- $placement := include "berth-lib.placement" (dict "root" .root "settings" $s "path" $path "kind" .kind) -}}
{{- if and $s.enabled (or (ne $placement "none") $s.wait.enabled) }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  {{- with .labels }}
  labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  berth.yaml: |
    {{- include "berth-lib.config" (dict "root" .root "settings" $s "path" $path "placement" $placement) | nindent 4 }}
{{- end }}
{{- end -}}

{{/* checksum (same dict as configMap) -> sha256 of the rendered berth.yaml, for a checksum/config pod annotation. */}}
{{- define "berth-lib.checksum" -}}
{{- $s := include "berth-lib.settings" . | fromJson -}}
{{- $path := .path | default "berth" -}}
{{- $placement := include "berth-lib.placement" (dict "root" .root "settings" $s "path" $path "kind" .kind) -}}
{{- include "berth-lib.config" (dict "root" .root "settings" $s "path" $path "placement" $placement) | sha256sum -}}
{{- end -}}
