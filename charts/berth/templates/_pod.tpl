{{/*
podSpec (dict "root" $ "name" N "w" W) -> the workload's pod spec before
berth is added (YAML). "berth.podTemplate" passes it through
"berth-lib.pod", the same include an existing chart uses.
*/}}
{{- define "berth.podSpec" -}}
{{- $root := .root -}}
{{- $w := .w -}}
{{- $name := .name -}}
{{- $objname := include "berth.objectName" (dict "root" $root "name" $name) -}}
{{- $batch := has $w.kind (list "Job" "CronJob") -}}
{{- /* volumes and mounts shared by the main and extra containers */ -}}
{{- $mounts := list -}}
{{- $volumes := list -}}
{{- if $w.tmpDir.enabled -}}
{{- $mounts = append $mounts (dict "name" "tmp" "mountPath" "/tmp") -}}
{{- $volumes = append $volumes (dict "name" "tmp" "emptyDir" (dict "sizeLimit" $w.tmpDir.sizeLimit)) -}}
{{- end -}}
{{- range $vname := keys ($w.volumes | default dict) | sortAlpha -}}
{{- $v := get $w.volumes $vname -}}
{{- if ne (toString (dig "enabled" true $v)) "false" -}}
{{- if not $v.source -}}
{{- fail (printf "workloads.%s.volumes.%s.source is required (a volume source such as {emptyDir: {}} or {secret: {secretName: x}})" $name $vname) -}}
{{- end -}}
{{- $volumes = append $volumes (merge (dict "name" $vname) $v.source) -}}
{{- if $v.mountPath -}}
{{- $m := dict "name" $vname "mountPath" $v.mountPath -}}
{{- if $v.readOnly -}}{{- $_ := set $m "readOnly" true -}}{{- end -}}
{{- if $v.subPath -}}{{- $_ := set $m "subPath" $v.subPath -}}{{- end -}}
{{- $mounts = append $mounts $m -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $cname := keys ($w.volumeClaimTemplates | default dict) | sortAlpha -}}
{{- $v := get $w.volumeClaimTemplates $cname -}}
{{- if ne $w.kind "StatefulSet" -}}
{{- fail (printf "workloads.%s.volumeClaimTemplates.%s: volumeClaimTemplates need kind StatefulSet (workloads.%s.kind=%s)" $name $cname $name $w.kind) -}}
{{- end -}}
{{- if not $v.mountPath -}}
{{- fail (printf "workloads.%s.volumeClaimTemplates.%s.mountPath is required" $name $cname) -}}
{{- end -}}
{{- $mounts = append $mounts (dict "name" $cname "mountPath" $v.mountPath) -}}
{{- end -}}
{{- /* the main container */ -}}
{{- if not $w.image.repository -}}
{{- fail (printf "workloads.%s.image.repository is required" $name) -}}
{{- end -}}
{{- $main := dict "name" $name "image" (include "berth.image" (dict "root" $root "image" $w.image)) "imagePullPolicy" $w.image.pullPolicy -}}
{{- with $w.command -}}{{- $_ := set $main "command" . -}}{{- end -}}
{{- with $w.args -}}{{- $_ := set $main "args" . -}}{{- end -}}
{{- with (include "berth-lib.envList" (dict "env" $w.env) | fromJsonArray) -}}{{- $_ := set $main "env" . -}}{{- end -}}
{{- with $w.envFrom -}}{{- $_ := set $main "envFrom" . -}}{{- end -}}
{{- $ports := list -}}
{{- range $pname := keys ($w.ports | default dict) | sortAlpha -}}
{{- $p := get $w.ports $pname -}}
{{- if eq $pname "berth" -}}
{{- fail (printf "workloads.%s.ports.berth: the port name berth is reserved for the berth sidecar" $name) -}}
{{- end -}}
{{- $ports = append $ports (dict "name" $pname "containerPort" (int $p.port) "protocol" ($p.protocol | default "TCP")) -}}
{{- end -}}
{{- with $ports -}}{{- $_ := set $main "ports" . -}}{{- end -}}
{{- $_ := set $main "resources" $w.resources -}}
{{- $_ := set $main "securityContext" $w.securityContext -}}
{{- $mainMounts := $mounts -}}
{{- /* kubernetesApi: the ServiceAccount token (projected, rotated by kubelet), the cluster CA and the namespace where client libraries look for them, in the main container only: berth and the extra containers never see the token, and the pod keeps automountServiceAccountToken: false. */ -}}
{{- if $w.kubernetesApi.enabled -}}
{{- $mainMounts = append $mainMounts (dict "name" "kube-api-access" "mountPath" "/var/run/secrets/kubernetes.io/serviceaccount" "readOnly" true) -}}
{{- $volumes = append $volumes (dict "name" "kube-api-access" "projected" (dict "defaultMode" 292 "sources" (list (dict "serviceAccountToken" (dict "path" "token" "expirationSeconds" (int ($w.kubernetesApi.expirationSeconds | default 3607)))) (dict "configMap" (dict "name" "kube-root-ca.crt" "items" (list (dict "key" "ca.crt" "path" "ca.crt")))) (dict "downwardAPI" (dict "items" (list (dict "path" "namespace" "fieldRef" (dict "apiVersion" "v1" "fieldPath" "metadata.namespace")))))))) -}}
{{- end -}}
{{- with $mainMounts -}}{{- $_ := set $main "volumeMounts" . -}}{{- end -}}
{{- range $p := list "startup" "liveness" "readiness" -}}
{{- $cfg := get ($w.probes | default dict) $p | default dict -}}
{{- if and (ne (toString (dig "enabled" true $cfg)) "false") (not (empty (dig "custom" dict $cfg))) -}}
{{- $_ := set $main (printf "%sProbe" $p) $cfg.custom -}}
{{- end -}}
{{- end -}}
{{- with $w.lifecycle -}}{{- $_ := set $main "lifecycle" . -}}{{- end -}}
{{- $containers := list $main -}}
{{- range $cname := keys ($w.sidecars | default dict) | sortAlpha -}}
{{- $c := merge (dict "name" $cname) (deepCopy (get $w.sidecars $cname)) -}}
{{- if not (hasKey $c "securityContext") -}}{{- $_ := set $c "securityContext" $w.securityContext -}}{{- end -}}
{{- if not (hasKey $c "resources") -}}{{- $_ := set $c "resources" $w.resources -}}{{- end -}}
{{- if and $mounts (not (hasKey $c "volumeMounts")) -}}{{- $_ := set $c "volumeMounts" $mounts -}}{{- end -}}
{{- $containers = append $containers $c -}}
{{- end -}}
{{- $inits := list -}}
{{- range $cname := keys ($w.initContainers | default dict) | sortAlpha -}}
{{- $c := merge (dict "name" $cname) (deepCopy (get $w.initContainers $cname)) -}}
{{- if not (hasKey $c "securityContext") -}}{{- $_ := set $c "securityContext" $w.securityContext -}}{{- end -}}
{{- if not (hasKey $c "resources") -}}{{- $_ := set $c "resources" $w.resources -}}{{- end -}}
{{- if and $mounts (not (hasKey $c "volumeMounts")) -}}{{- $_ := set $c "volumeMounts" $mounts -}}{{- end -}}
{{- $inits = append $inits $c -}}
{{- end -}}
{{- /* the pod */ -}}
{{- $spec := dict "serviceAccountName" (include "berth.workloadServiceAccount" (dict "root" $root "name" $name "w" $w)) "automountServiceAccountToken" $root.Values.serviceAccount.automountServiceAccountToken "enableServiceLinks" false "securityContext" $w.podSecurityContext "containers" $containers -}}
{{- with $inits -}}{{- $_ := set $spec "initContainers" . -}}{{- end -}}
{{- with $volumes -}}{{- $_ := set $spec "volumes" . -}}{{- end -}}
{{- with $root.Values.imagePullSecrets -}}{{- $_ := set $spec "imagePullSecrets" . -}}{{- end -}}
{{- with $w.priorityClassName -}}{{- $_ := set $spec "priorityClassName" . -}}{{- end -}}
{{- with $w.nodeSelector -}}{{- $_ := set $spec "nodeSelector" . -}}{{- end -}}
{{- with $w.tolerations -}}{{- $_ := set $spec "tolerations" . -}}{{- end -}}
{{- if not (kindIs "invalid" $w.terminationGracePeriodSeconds) -}}{{- $_ := set $spec "terminationGracePeriodSeconds" (int $w.terminationGracePeriodSeconds) -}}{{- end -}}
{{- if $batch -}}
{{- $_ := set $spec "restartPolicy" ($w.job.restartPolicy | default "Never") -}}
{{- else if ne $w.kind "DaemonSet" -}}
{{- $selector := dict "matchLabels" (include "berth.selectorLabels" (dict "root" $root "name" $name) | fromYaml) -}}
{{- $affinity := deepCopy ($w.affinity | default dict) -}}
{{- if eq $w.antiAffinity.type "soft" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" (int $w.antiAffinity.weight) "podAffinityTerm" (dict "topologyKey" $w.antiAffinity.topologyKey "labelSelector" $selector)))) -}}
{{- else if eq $w.antiAffinity.type "hard" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list (dict "topologyKey" $w.antiAffinity.topologyKey "labelSelector" $selector))) -}}
{{- end -}}
{{- with $affinity -}}{{- $_ := set $spec "affinity" . -}}{{- end -}}
{{- if $w.topologySpread.enabled -}}
{{- $_ := set $spec "topologySpreadConstraints" (list (dict "maxSkew" (int $w.topologySpread.maxSkew) "topologyKey" $w.topologySpread.topologyKey "whenUnsatisfiable" $w.topologySpread.whenUnsatisfiable "labelSelector" $selector)) -}}
{{- end -}}
{{- end -}}
{{- /* podSpec: any other pod spec field (hostAliases, dnsConfig, runtimeClassName, ...), merged last */ -}}
{{- with $w.podSpec -}}{{- $spec = mustMergeOverwrite $spec (deepCopy .) -}}{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/* podTemplate (dict "root" $ "name" N "w" W) -> the PodTemplateSpec (metadata + berth-ified spec). */}}
{{- define "berth.podTemplate" -}}
{{- $root := .root -}}
{{- $w := .w -}}
{{- $objname := include "berth.objectName" (dict "root" $root "name" .name) -}}
{{- $cm := dict "root" $root "name" (printf "%s-berth" $objname) "settings" $w.berth "path" (include "berth.berthPath" .name) "kind" $w.kind -}}
{{- $ann := deepCopy ($w.podAnnotations | default dict) -}}
{{- if $w.berth.enabled -}}
{{- $_ := set $ann "checksum/config" (include "berth-lib.checksum" $cm) -}}
{{- end -}}
metadata:
  labels:
    {{- include "berth.selectorLabels" (dict "root" $root "name" .name) | nindent 4 }}
    {{- with $w.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $ann }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- include "berth-lib.pod" (dict "root" $root "spec" (include "berth.podSpec" .) "settings" $w.berth "configMap" (printf "%s-berth" $objname) "path" (include "berth.berthPath" .name) "gracePath" (printf "workloads.%s.terminationGracePeriodSeconds" .name) "kind" $w.kind "main" .name) | nindent 2 }}
{{- end -}}
