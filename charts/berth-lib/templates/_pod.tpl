{{/*
berth-lib: the sidecar container, the `berth wait` init container, and
"berth-lib.pod", the one include that adds berth to an existing pod spec.
*/}}

{{/*
envList (dict "env" M) -> JSON list of EnvVar from a keyed map:
  NAME: "value"                      -> {name, value}
  NAME: {valueFrom: {...}}           -> {name, valueFrom}
  NAME: {value: "x"}                 -> {name, value}
Sorted by name so renders are stable and overrides merge by key.
*/}}
{{- define "berth-lib.envList" -}}
{{- $out := list -}}
{{- $env := .env | default dict -}}
{{- range $name := keys $env | sortAlpha -}}
{{- $v := get $env $name -}}
{{- if kindIs "map" $v -}}
{{- $out = append $out (merge (dict "name" $name) $v) -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $out = append $out (dict "name" $name "value" (toString $v)) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* common parts of the berth containers: env, mounts */}}
{{- define "berth-lib.containerEnv" -}}
{{- $s := .settings -}}
{{- $env := list (dict "name" "BERTH_LOG_FORMAT" "value" (toString $s.logFormat)) (dict "name" "BERTH_LOG" "value" (toString $s.logLevel)) -}}
{{- /* The lifecycle token is in the pod spec anyway (kubelet's hook header cannot read a Secret); berth.yaml only says ${BERTH_LIFECYCLE_TOKEN}. */ -}}
{{- $env = append $env (dict "name" "BERTH_LIFECYCLE_TOKEN" "value" (include "berth-lib.lifecycle.token" .)) -}}
{{- $env = concat $env (include "berth-lib.envList" (dict "env" $s.env) | fromJsonArray) -}}
{{- toJson $env -}}
{{- end -}}

{{- define "berth-lib.containerMounts" -}}
{{- $mounts := list
      (dict "name" "berth-config" "mountPath" "/etc/berth" "readOnly" true)
      (dict "name" "berth-run" "mountPath" "/var/run/berth")
      (dict "name" "berth-tmp" "mountPath" "/tmp") -}}
{{- toJson $mounts -}}
{{- end -}}

{{/* containerPorts (same dict as container) -> berth's declared ports: `berth` (health), and `berth-grpc` when grpcPort is set. Never the lifecycle port. */}}
{{- define "berth-lib.containerPorts" -}}
{{- $ports := list (dict "name" "berth" "containerPort" (int .settings.port) "protocol" "TCP") -}}
{{- with (include "berth-lib.grpcPort" (dict "settings" .settings "path" (.path | default "berth"))) -}}
{{- $ports = append $ports (dict "name" "berth-grpc" "containerPort" (atoi .) "protocol" "TCP") -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{/*
container (dict "root" $ "settings" S "placement" native|regular)
-> the berth sidecar container (JSON).
*/}}
{{- define "berth-lib.container" -}}
{{- $s := .settings -}}
{{- $port := int $s.port -}}
{{- $c := dict
      "name" "berth"
      "image" (include "berth-lib.image" (dict "image" $s.image))
      "imagePullPolicy" $s.image.pullPolicy
      "args" (list "serve" "--config" "/etc/berth/berth.yaml")
      "ports" (include "berth-lib.containerPorts" . | fromJsonArray)
      "env" (include "berth-lib.containerEnv" . | fromJsonArray)
      "volumeMounts" (include "berth-lib.containerMounts" . | fromJsonArray)
      "resources" $s.resources
      "securityContext" $s.securityContext -}}
{{- with $s.envFrom }}{{- $_ := set $c "envFrom" . -}}{{- end -}}
{{- $startupPath := "/api/v1/health/live" -}}
{{- if and (eq .placement "native") $s.startup.gate (include "berth-lib.gate" . | fromJsonArray) -}}
{{- /* A native sidecar's startupProbe holds the next init containers and the main container until berth's startup gate (the critical dependencies) has passed. */ -}}
{{- $startupPath = "/api/v1/health/startup" -}}
{{- end -}}
{{- $_ := set $c "startupProbe" (dict "httpGet" (dict "path" $startupPath "port" "berth") "periodSeconds" (int $s.startup.periodSeconds) "timeoutSeconds" 1 "failureThreshold" (int $s.startup.failureThreshold)) -}}
{{- $_ := set $c "livenessProbe" (dict "httpGet" (dict "path" "/api/v1/health/live" "port" "berth") "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) -}}
{{- $_ := set $c "readinessProbe" (dict "httpGet" (dict "path" "/api/v1/health/live" "port" "berth") "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) -}}
{{- if eq .placement "native" -}}{{- $_ := set $c "restartPolicy" "Always" -}}{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* waitContainer (dict "root" $ "settings" S) -> the one-shot `berth wait` init container (JSON). */}}
{{- define "berth-lib.waitContainer" -}}
{{- $s := .settings -}}
{{- $_ := include "berth-lib.seconds" (dict "value" $s.wait.timeout "path" (printf "%s.wait.timeout" .path)) -}}
{{- $c := dict
      "name" "berth-wait"
      "image" (include "berth-lib.image" (dict "image" $s.image))
      "imagePullPolicy" $s.image.pullPolicy
      "args" (list "wait" "--config" "/etc/berth/berth.yaml" "--timeout" (toString $s.wait.timeout))
      "env" (include "berth-lib.containerEnv" . | fromJsonArray)
      "volumeMounts" (include "berth-lib.containerMounts" . | fromJsonArray)
      "resources" $s.resources
      "securityContext" $s.securityContext -}}
{{- with $s.envFrom }}{{- $_ := set $c "envFrom" . -}}{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* volumes (dict "settings" S "configMap" NAME) -> the pod volumes berth needs (JSON list). */}}
{{- define "berth-lib.volumes" -}}
{{- $s := .settings -}}
{{- $sources := list (dict "configMap" (dict "name" .configMap "items" (list (dict "key" "berth.yaml" "path" "berth.yaml")))) -}}
{{- range $file := keys ($s.secretFiles | default dict) | sortAlpha -}}
{{- $f := get $s.secretFiles $file -}}
{{- $sources = append $sources (dict "secret" (dict "name" $f.secretName "items" (list (dict "key" $f.key "path" (printf "secret/%s" $file))))) -}}
{{- end -}}
{{- $vols := list
      (dict "name" "berth-config" "projected" (dict "sources" $sources "defaultMode" 292))
      (dict "name" "berth-run" "emptyDir" (dict "sizeLimit" "16Mi"))
      (dict "name" "berth-tmp" "emptyDir" (dict "sizeLimit" "16Mi")) -}}
{{- toJson $vols -}}
{{- end -}}

{{/*
pod: adds berth to a pod spec. The one include an existing chart needs:

  spec:
    template:
      spec:
        {{- include "berth-lib.pod" (dict "root" $ "spec" (include "mychart.podSpec" .) "settings" .Values.berth "configMap" "myapp-berth") | nindent 8 }}

Keys:
  root       $
  spec       the pod spec, as a YAML string or a dict
  settings   the berth settings block (merged over "berth-lib.defaults")
  configMap  name of the ConfigMap made by "berth-lib.configMap"
  path       values path for messages (default "berth")
  gracePath  values path of terminationGracePeriodSeconds for messages
             (default "terminationGracePeriodSeconds")
  kind       Deployment (default), StatefulSet, DaemonSet, Job or CronJob
  main       name of the main container (default: the first container)

What it does, in order:
  1. volumes berth-config (projected ConfigMap + secretFiles), berth-run
     (shared with the main container at /var/run/berth) and berth-tmp;
  2. the main container: the berth-run mount, and, for long-running kinds,
     startup/liveness/readiness probes on berth's /api/v1/health/startup,
     /live and /ready and a preStop httpGet on /api/v1/lifecycle/prestop
     on the lifecycle port with the lifecycle token header (see
     _lifecycle.tpl), each only where the container does not define its own;
  3. the berth container: a native sidecar (first initContainer with
     restartPolicy: Always) or a regular container, see "berth-lib.placement";
  4. the `berth wait` init container when wait.enabled;
  5. terminationGracePeriodSeconds, when berth's preStop hook is used:
     defaults to drain.delay + drain.timeout + 5 s; a shorter explicit
     value fails the render (a container's own preStop replaces berth's
     hook and leaves the grace period alone);
  6. shareProcessNamespace: true when the drain notifies by signal or a
     process check needs to see the main process.
The main container's probes use the port number: a named port resolves only
against the probed container's own ports, and `berth` is declared on the
berth container.
*/}}
{{- define "berth-lib.pod" -}}
{{- $path := .path | default "berth" -}}
{{- $gracePath := .gracePath | default "terminationGracePeriodSeconds" -}}
{{- $kind := .kind | default "Deployment" -}}
{{- $spec := .spec -}}
{{- if kindIs "string" $spec -}}{{- $spec = fromYaml $spec -}}{{- else -}}{{- $spec = deepCopy $spec -}}{{- end -}}
{{- $s := include "berth-lib.settings" . | fromJson -}}
{{- $placement := include "berth-lib.placement" (dict "root" .root "settings" $s "path" $path "kind" $kind) -}}
{{- $wait := and $s.enabled $s.wait.enabled (include "berth-lib.gate" (dict "root" .root "settings" $s "path" $path "placement" $placement) | fromJsonArray) -}}
{{- if or (ne $placement "none") $wait -}}
{{- if not .configMap -}}{{- fail "berth-lib.pod: the configMap key (name of the berth ConfigMap) is required" -}}{{- end -}}
{{- $longRunning := not (has $kind (list "Job" "CronJob")) -}}
{{- $sidecar := ne $placement "none" -}}
{{- $ctx := dict "root" .root "settings" $s "placement" $placement "path" $path -}}
{{- /* 1. volumes */ -}}
{{- $have := list -}}
{{- range ($spec.volumes | default list) -}}{{- $have = append $have .name -}}{{- end -}}
{{- $vols := $spec.volumes | default list -}}
{{- range (include "berth-lib.volumes" (dict "settings" $s "configMap" .configMap) | fromJsonArray) -}}
{{- if not (has .name $have) -}}{{- $vols = append $vols . -}}{{- end -}}
{{- end -}}
{{- $_ := set $spec "volumes" $vols -}}
{{- /* 2. main container */ -}}
{{- $containers := list -}}
{{- $mainName := .main | default "" -}}
{{- if and (not $mainName) $spec.containers -}}{{- $mainName = (first $spec.containers).name -}}{{- end -}}
{{- $found := false -}}
{{- $berthHook := false -}}
{{- $port := int $s.port -}}
{{- range $c := ($spec.containers | default list) -}}
{{- if eq $c.name $mainName -}}
{{- $found = true -}}
{{- $mounts := $c.volumeMounts | default list -}}
{{- $mounted := false -}}
{{- range $mounts -}}{{- if eq .name "berth-run" -}}{{- $mounted = true -}}{{- end -}}{{- end -}}
{{- if not $mounted -}}{{- $mounts = append $mounts (dict "name" "berth-run" "mountPath" "/var/run/berth") -}}{{- end -}}
{{- $_ := set $c "volumeMounts" $mounts -}}
{{- if and $sidecar $longRunning -}}
{{- range $probe, $endpoint := dict "startup" "startup" "liveness" "live" "readiness" "ready" -}}
{{- $p := get $s.mainProbes $probe -}}
{{- $key := printf "%sProbe" $probe -}}
{{- if and $p.enabled (not (hasKey $c $key)) -}}
{{- $success := int ($p.successThreshold | default 1) -}}
{{- if and (gt $success 1) (ne $probe "readiness") -}}
{{- fail (printf "%s.mainProbes.%s.successThreshold=%d: Kubernetes requires 1 for a %s probe (only readiness may ask for more)" $path $probe $success $probe) -}}
{{- end -}}
{{- $spec := dict "httpGet" (dict "path" (printf "/api/v1/health/%s" $endpoint) "port" $port "scheme" "HTTP") "periodSeconds" (int $p.periodSeconds) "timeoutSeconds" (int $p.timeoutSeconds) "failureThreshold" (int $p.failureThreshold) "successThreshold" $success -}}
{{- /* The app's own timings (e.g. initialDelaySeconds from its guide) carry over to berth's probe. */ -}}
{{- if $p.initialDelaySeconds -}}{{- $_ := set $spec "initialDelaySeconds" (int $p.initialDelaySeconds) -}}{{- end -}}
{{- $_ := set $c $key $spec -}}
{{- end -}}
{{- end -}}
{{- if $s.preStop -}}
{{- $lc := $c.lifecycle | default dict -}}
{{- if not (hasKey $lc "preStop") -}}
{{- $_ := set $lc "preStop" (include "berth-lib.lifecycle.hook" $ctx | fromJson) -}}
{{- $berthHook = true -}}
{{- end -}}
{{- $_ := set $c "lifecycle" $lc -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $containers = append $containers $c -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "%s: the pod has no container named %q to attach berth to" $path $mainName) -}}
{{- end -}}
{{- /* 3 + 4. berth containers */ -}}
{{- $inits := list -}}
{{- if eq $placement "native" -}}{{- $inits = append $inits (include "berth-lib.container" $ctx | fromJson) -}}{{- end -}}
{{- if $wait -}}{{- $inits = append $inits (include "berth-lib.waitContainer" $ctx | fromJson) -}}{{- end -}}
{{- $inits = concat $inits ($spec.initContainers | default list) -}}
{{- if $inits -}}{{- $_ := set $spec "initContainers" $inits -}}{{- end -}}
{{- if eq $placement "regular" -}}{{- $containers = append $containers (include "berth-lib.container" $ctx | fromJson) -}}{{- end -}}
{{- $_ := set $spec "containers" $containers -}}
{{- /* 5. grace period: only when berth's hook is the preStop (a container's own preStop replaces it, and its own grace period stands) */ -}}
{{- if and $sidecar $longRunning $s.preStop $berthHook -}}
{{- $min := include "berth-lib.minGrace" (dict "settings" $s "path" $path) | atoi -}}
{{- if hasKey $spec "terminationGracePeriodSeconds" -}}
{{- if lt (int $spec.terminationGracePeriodSeconds) $min -}}
{{- fail (printf "%s=%d is shorter than %s.drain.delay (%s) + %s.drain.timeout (%s) + 5s = %ds, the time berth's preStop hook may take: raise it, shorten the drain, or set %s.preStop: false (the main container then gets no berth preStop hook, e.g. when the app drains itself)" $gracePath (int $spec.terminationGracePeriodSeconds) $path (toString $s.drain.delay) $path (toString $s.drain.timeout) $min $path) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $spec "terminationGracePeriodSeconds" $min -}}
{{- end -}}
{{- end -}}
{{- /* 6. shared PID namespace when berth must see or signal the main process */ -}}
{{- $needPid := eq (toString (dig "notify" "type" "none" $s.drain)) "signal" -}}
{{- range $name, $c := $s.checks | default dict -}}{{- if eq (toString (dig "type" "" $c)) "process" -}}{{- $needPid = true -}}{{- end -}}{{- end -}}
{{- if and $sidecar $needPid (not (hasKey $spec "shareProcessNamespace")) -}}
{{- $_ := set $spec "shareProcessNamespace" true -}}
{{- end -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}
