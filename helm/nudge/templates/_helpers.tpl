{{/* Names, labels and the pieces every Nudge pod shares. */}}

{{- define "nudge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nudge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nudge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "nudge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nudge
{{- end }}

{{/* Selector labels of one component: include "nudge.selectorLabels" (list . "sender") */}}
{{- define "nudge.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "nudge.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "nudge.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "nudge.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "nudge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nudge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nudge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "nudge.secretName" -}}
{{- if .Values.secrets.create }}
{{- include "nudge.fullname" . }}
{{- else }}
{{- required "secrets.existingSecret: name the Secret holding smtp-url and token-secret (or set secrets.create=true to try the chart)" .Values.secrets.existingSecret }}
{{- end }}
{{- end }}

{{- define "nudge.journeysConfigMap" -}}
{{- default (printf "%s-journeys" (include "nudge.fullname" .)) .Values.journeys.existingConfigMap }}
{{- end }}

{{- define "nudge.journeysContent" -}}
{{- $content := default (.Files.Get "files/journeys.yaml") .Values.journeys.content }}
{{- required "journeys.content is empty and the chart has no files/journeys.yaml" $content }}
{{- end }}

{{/* Annotations that roll a pod when the journeys (or a chart-created Secret) change. */}}
{{- define "nudge.checksums" -}}
checksum/journeys: {{ include "nudge.journeysContent" . | sha256sum }}
{{- if .Values.secrets.create }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Environment every Nudge container gets. */}}
{{- define "nudge.commonEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
- name: NUDGE_TOPIC_PREFIX
  value: {{ .Values.topicPrefix | quote }}
- name: NUDGE_TOPIC_PARTITIONS
  value: {{ .Values.topicPartitions | quote }}
- name: NUDGE_REPLICATION_FACTOR
  value: {{ .Values.replicationFactor | quote }}
- name: NUDGE_DELAY_SCALE
  value: {{ .Values.delayScale | quote }}
- name: NUDGE_JOURNEYS
  value: /etc/nudge/journeys.yaml
- name: NUDGE_PUBLIC_URL
  value: {{ .Values.publicUrl | quote }}
- name: NUDGE_TRACKING
  value: {{ ternary "1" "0" .Values.tracking | quote }}
- name: NUDGE_LOG_FORMAT
  value: {{ .Values.log.format | quote }}
- name: NUDGE_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: NUDGE_STATE_DIR
  value: /var/lib/nudge/state
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* NUDGE_TOKEN_SECRET (and the retired keys), for the services that sign or verify links. */}}
{{- define "nudge.tokenEnv" -}}
- name: NUDGE_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "nudge.secretName" . }}
      key: {{ .Values.secrets.tokenSecretKey }}
- name: NUDGE_TOKEN_SECRET_PREVIOUS
  valueFrom:
    secretKeyRef:
      name: {{ include "nudge.secretName" . }}
      key: {{ .Values.secrets.previousTokenSecretsKey }}
      optional: true
{{- end }}

{{/* Volumes every Nudge pod mounts: /tmp (root FS is read-only) and the journeys file. */}}
{{- define "nudge.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: journeys
  configMap:
    name: {{ include "nudge.journeysConfigMap" . }}
{{- end }}

{{- define "nudge.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: journeys
  mountPath: /etc/nudge
  readOnly: true
{{- end }}

{{/* HTTP probes on /livez and /readyz: include "nudge.probes" (dict "port" "http" "values" .Values.sender) */}}
{{- define "nudge.probes" -}}
{{- with .values.startupProbe }}
startupProbe:
  httpGet: {path: /livez, port: http}
  periodSeconds: {{ .periodSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
livenessProbe:
  httpGet: {path: /livez, port: http}
  periodSeconds: {{ .values.livenessProbe.periodSeconds }}
  failureThreshold: {{ .values.livenessProbe.failureThreshold }}
  timeoutSeconds: {{ .values.livenessProbe.timeoutSeconds }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ .values.readinessProbe.periodSeconds }}
  failureThreshold: {{ .values.readinessProbe.failureThreshold }}
  timeoutSeconds: {{ .values.readinessProbe.timeoutSeconds }}
{{- end }}

{{/* Spread the pods of a component over nodes unless the values say otherwise. */}}
{{- define "nudge.affinity" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $custom := index . 2 -}}
{{- if $custom }}
{{- toYaml $custom }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "nudge.selectorLabels" (list $root $component) | nindent 12 }}
{{- end }}
{{- end }}

{{/* Refuse settings that cannot work, with the fix in the message. */}}
{{- define "nudge.validate" -}}
{{- if gt (int .Values.processor.replicas) (int .Values.topicPartitions) }}
{{- fail (printf "processor.replicas=%v exceeds topicPartitions=%v: the extra workers would get no partition and sit idle (docs/operations.md, Scaling)" .Values.processor.replicas .Values.topicPartitions) }}
{{- end }}
{{- if gt (int .Values.sender.replicas) (int .Values.topicPartitions) }}
{{- fail (printf "sender.replicas=%v exceeds topicPartitions=%v: the extra senders would get no partition and sit idle" .Values.sender.replicas .Values.topicPartitions) }}
{{- end }}
{{- if and .Values.web.enabled .Values.web.ingress.enabled (not .Values.web.trustedProxies) (not (include "nudge.webRateLimitOff" .)) }}
{{- fail "web.ingress.enabled without web.trustedProxies: behind the ingress every request comes from the ingress controller, so all users would share one per-client rate limit (50 requests/s) and a campaign's clicks would get 429. Set web.trustedProxies to the ingress pods' network (e.g. --set 'web.trustedProxies={10.0.0.0/8}'), or turn the limit off (web.extraArgs: [--per-client-rate=0]) and limit at the ingress (docs/links.md)" }}
{{- end }}
{{- end }}

{{/* "true" when web.extraArgs turn the link service's per-client rate limit off. */}}
{{- define "nudge.webRateLimitOff" -}}
{{- $args := .Values.web.extraArgs -}}
{{- range $i, $arg := $args }}
{{- if eq $arg "--per-client-rate=0" }}true{{ end }}
{{- if and (eq $arg "--per-client-rate") (lt (add1 $i) (len $args)) }}
{{- if eq (index $args (add1 $i) | toString) "0" }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}
