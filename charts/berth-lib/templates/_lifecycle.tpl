{{/*
berth-lib: who may drain. Kubelet's preStop hook reaches berth from the
node, not from loopback, so berth opens a second port (lifecycle.port,
default 8643) that serves only the lifecycle paths and only to callers that
carry the release's lifecycle token in the `berth-lifecycle-token` header.
The hook rendered on the main container carries that header; nothing else
does. No template of this library or of charts/berth ever puts the
lifecycle port on a Service, an Ingress, an HTTPRoute or a NetworkPolicy
rule, and the berth container does not even declare it as a containerPort,
so no Service can reach it by name.

The token is one per release, in the Secret "berth-lib.lifecycle.secretName".
It stays the same across `helm upgrade` (looked up from that Secret) so pods
do not roll for nothing. Renders without a cluster (`helm template`,
GitOps tools) cannot look it up: set berth.lifecycle.token there (16+
printable characters, e.g. from `openssl rand -hex 24`).
*/}}

{{/* lifecycle.secretName (dict "root" $) -> name of the release's lifecycle-token Secret. */}}
{{- define "berth-lib.lifecycle.secretName" -}}
{{- printf "%s-berth-lifecycle" .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
lifecycle.token (dict "root" $ "settings" S "path" P) -> the token the
hook sends and berth expects: S.lifecycle.token when set, else the
release's token (the Secret's, else a new random one), computed once per
render so every pod and the Secret agree.
*/}}
{{- define "berth-lib.lifecycle.token" -}}
{{- $lc := .settings.lifecycle | default dict -}}
{{- $given := toString ($lc.token | default "") -}}
{{- if $given -}}
{{- if or (lt (len $given) 16) (not (regexMatch "^[!-~]+$" $given)) -}}
{{- fail (printf "%s.lifecycle.token must be at least 16 printable characters without spaces (it travels in an HTTP header): e.g. the output of `openssl rand -hex 24`" .path) -}}
{{- end -}}
{{- $given -}}
{{- else -}}
{{- $cache := .root.Values -}}
{{- if not (hasKey $cache "__berthLifecycleToken") -}}
{{- $tok := "" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "berth-lib.lifecycle.secretName" .) -}}
{{- if $existing -}}{{- $tok = index ($existing.data | default dict) "token" | default "" | b64dec -}}{{- end -}}
{{- if not $tok -}}{{- $tok = randAlphaNum 40 -}}{{- end -}}
{{- $_ := set $cache "__berthLifecycleToken" $tok -}}
{{- end -}}
{{- get $cache "__berthLifecycleToken" -}}
{{- end -}}
{{- end -}}

{{/* lifecycle.port (dict "settings" S "path" P) -> the lifecycle port number, checked. */}}
{{- define "berth-lib.lifecycle.port" -}}
{{- $lc := .settings.lifecycle | default dict -}}
{{- $p := int ($lc.port | default 8643) -}}
{{- if or (lt $p 1) (gt $p 65535) -}}
{{- fail (printf "%s.lifecycle.port=%d: use a port between 1 and 65535" .path $p) -}}
{{- end -}}
{{- if eq $p (int .settings.port) -}}
{{- fail (printf "%s.lifecycle.port=%d is berth's health port (%s.port): the lifecycle port must differ, it is the one no Service ever exposes" .path $p .path) -}}
{{- end -}}
{{- $p -}}
{{- end -}}

{{/* lifecycle.hook (dict "root" $ "settings" S "path" P) -> the main container's preStop handler (JSON). */}}
{{- define "berth-lib.lifecycle.hook" -}}
{{- $port := include "berth-lib.lifecycle.port" . | atoi -}}
{{- $header := dict "name" "berth-lifecycle-token" "value" (include "berth-lib.lifecycle.token" .) -}}
{{- toJson (dict "httpGet" (dict "path" "/api/v1/lifecycle/prestop" "port" $port "scheme" "HTTP" "httpHeaders" (list $header))) -}}
{{- end -}}

{{/*
lifecycle.secret (dict "root" $ "labels" L ["settings" S]) -> the release's
lifecycle-token Secret (S: the chart-wide berth settings, when they set
lifecycle.token). charts/berth renders it once; a chart that adds berth through
"berth-lib.pod" includes it once too, so upgrades keep the token.
*/}}
{{- define "berth-lib.lifecycle.secret" -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "berth-lib.lifecycle.secretName" . }}
  namespace: {{ .root.Release.Namespace }}
  {{- with .labels }}
  labels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
type: Opaque
data:
  token: {{ include "berth-lib.lifecycle.token" (dict "root" .root "settings" (.settings | default dict) "path" "berth") | b64enc | quote }}
{{- end -}}
