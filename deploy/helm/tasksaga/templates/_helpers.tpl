{{/* Labels of every object; selectorLabels pick one component's pods. */}}
{{- define "tasksaga.labels" -}}
app.kubernetes.io/name: tasksaga
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: tasksaga
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- if .pool }}
tasksaga.io/worker-pool: {{ .pool }}
{{- end }}
{{- end }}

{{- define "tasksaga.selectorLabels" -}}
app.kubernetes.io/name: tasksaga
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .pool }}
tasksaga.io/worker-pool: {{ .pool }}
{{- end }}
{{- end }}

{{/* The release's pods, all components (NetworkPolicy's default deny). */}}
{{- define "tasksaga.releaseSelector" -}}
app.kubernetes.io/name: tasksaga
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tasksaga.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}

{{/* One variable from an existing Secret: (dict "name" VAR "ref" .Values.secrets.x). */}}
{{- define "tasksaga.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secrets: a Secret name for %s" .name) .ref.name }}
      key: {{ required (printf "secrets: a key for %s" .name) .ref.key }}
{{- end }}

{{/* The shards of the event store (values.shards), for the containers that read them. */}}
{{- define "tasksaga.shardEnv" -}}
{{- $shards := .Values.shards | default dict }}
{{- $secret := $shards.secret | default dict }}
{{- if $secret.name }}
{{- include "tasksaga.secretEnv" (dict "name" "TASKSAGA_SHARDS" "ref" $secret) }}
{{- if $shards.buckets }}
- name: TASKSAGA_SHARD_BUCKETS
  value: {{ $shards.buckets | quote }}
{{- end }}
{{- else if $shards.buckets }}
{{- fail "shards.buckets is set but shards.secret.name is not: name the Secret holding TASKSAGA_SHARDS" }}
{{- end }}
{{- end }}

{{/* Extra variables for every container. */}}
{{- define "tasksaga.extraEnv" -}}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{/* Pod-level hardening shared by every pod. */}}
{{- define "tasksaga.podSecurity" -}}
serviceAccountName: {{ .Release.Name }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .Values.securityContext.runAsUser }}
  runAsGroup: {{ .Values.securityContext.runAsGroup }}
  fsGroup: {{ .Values.securityContext.fsGroup }}
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Container-level hardening shared by every container. */}}
{{- define "tasksaga.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  privileged: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Spread one component's pods over zones, then nodes; best effort. */}}
{{- define "tasksaga.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tasksaga.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ops port's probes (docs/operations.md). */}}
{{- define "tasksaga.opsProbes" -}}
readinessProbe:
  httpGet:
    path: /health/ready
    port: ops
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /health/live
    port: ops
  initialDelaySeconds: 20
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* preStop sleep: the pod leaves its Service's endpoints before SIGTERM. */}}
{{- define "tasksaga.lifecycle" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.shutdown.preStopSleepSeconds }}
{{- end }}

{{- define "tasksaga.gracePeriod" -}}
{{- $root := .root -}}
{{ add $root.Values.shutdown.preStopSleepSeconds (int .drain) $root.Values.shutdown.marginSeconds }}
{{- end }}

{{/* Autoscaling bounds, checked against the partition count. */}}
{{- define "tasksaga.checkScaling" -}}
{{- $need := printf "%s.autoscaling: minReplicas and maxReplicas are required" .what -}}
{{- $max := int (required $need (required $need .autoscaling).maxReplicas) -}}
{{- $min := int (required $need .autoscaling.minReplicas) -}}
{{- if gt $max (int .root.Values.topics.partitions) -}}
{{- fail (printf "%s: autoscaling.maxReplicas %d exceeds topics.partitions %d (replicas past the partitions idle)" .what $max (int .root.Values.topics.partitions)) -}}
{{- end -}}
{{- if or (lt $min 1) (gt $min $max) -}}
{{- fail (printf "%s: autoscaling.minReplicas must be between 1 and maxReplicas (%d)" .what $max) -}}
{{- end -}}
{{- end }}

{{- define "tasksaga.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- if . }}
    sizeLimit: {{ . }}
    {{- else }}
    sizeLimit: 256Mi
    {{- end }}
{{- end }}
