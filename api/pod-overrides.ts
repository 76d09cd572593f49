// Pod-level overrides a cluster user sets on a rollout pool or learner (env, volumes, pull secrets, placement,
// identity), and the names the operator keeps for itself: a clash with those is refused, naming the field.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DnsLabel, QUANTITY, withRules, type Rule } from './schema-kit.js';

/**
 * What the operator's own containers and volumes use. Reserved so that a user's entry never silently
 * replaces one (the builders would drop it anyway: the operator's wins). A unit test checks that every
 * name and path the builders make is listed here.
 */
export const RESERVED = {
  /** Every RLKUBE_* variable is the agents' contract (api/agent-env.ts), set or not. */
  envPrefix: 'RLKUBE_',
  envNames: ['HOME', 'MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'NODE_RANK', 'VLLM_ALLOW_RUNTIME_LORA_UPDATING'],
  volumePrefix: 'rlkube-',
  volumeNames: ['tmp', 'policies', 'dshm', 'nats-creds', 'checkpoints'],
  /** Mount paths the operator uses; a user's mount may be neither one of these nor below one. */
  mountPaths: ['/tmp', '/dev/shm', '/checkpoints', '/etc/rlkube', '/var/lib/rlkube'],
} as const;

const celList = (values: readonly string[]) => `[${values.map((v) => `'${v}'`).join(', ')}]`;
/** /tmp itself is the operator's; below it (a nested mount in its emptyDir) is the user's to take. */
const mountPathReserved = (path: string) => RESERVED.mountPaths.some((p) => path === p || (p !== '/tmp' && path.startsWith(`${p}/`)));

/** A DNS subdomain (RFC 1123): names of Secrets, ConfigMaps, ServiceAccounts, PriorityClasses. */
const DnsSubdomain = () => Type.String({ minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' });
/** An object of a Kubernetes core type left for the Pod API to check when the Deployment/StatefulSet is applied. */
const CoreObject = () => Type.Object({}, { additionalProperties: true, 'x-kubernetes-preserve-unknown-fields': true });

/** Exactly one of the given optional fields is set. */
function exactlyOne(fields: readonly string[], message: string): Rule<Record<string, unknown>> {
  return {
    rule: `${fields.map((f) => `(has(self.${f}) ? 1 : 0)`).join(' + ')} == 1`,
    message,
    check: (self) => fields.filter((f) => self[f] !== undefined).length === 1,
  };
}

const KeyRef = Type.Object({
  name: DnsSubdomain(),
  key: Type.String({ minLength: 1, maxLength: 253, pattern: '^[-._a-zA-Z0-9]+$' }),
  optional: Type.Optional(Type.Boolean()),
}, { additionalProperties: false });

const EnvVarSource = withRules(Type.Object({
  fieldRef: Type.Optional(Type.Object({
    apiVersion: Type.Optional(Type.String({ maxLength: 64 })),
    fieldPath: Type.String({ minLength: 1, maxLength: 256 }),
  }, { additionalProperties: false })),
  resourceFieldRef: Type.Optional(Type.Object({
    containerName: Type.Optional(Type.String({ maxLength: 63 })),
    resource: Type.String({ minLength: 1, maxLength: 64 }),
    /** A quantity written as a string ("1Mi", "1m"), as the client types it. */
    divisor: Type.Optional(Type.String({ pattern: QUANTITY, maxLength: 64 })),
  }, { additionalProperties: false })),
  configMapKeyRef: Type.Optional(KeyRef),
  secretKeyRef: Type.Optional(KeyRef),
}, { additionalProperties: false }), [
  exactlyOne(['fieldRef', 'resourceFieldRef', 'configMapKeyRef', 'secretKeyRef'], 'valueFrom must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef'),
]);

export const EnvVar = withRules(Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256, pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$' }),
  value: Type.Optional(Type.String({ maxLength: 32768 })),
  valueFrom: Type.Optional(EnvVarSource),
}, { additionalProperties: false }), [{
  rule: `!self.name.startsWith('${RESERVED.envPrefix}') && !(self.name in ${celList(RESERVED.envNames)})`,
  message: `env name is set by the operator: ${RESERVED.envPrefix}* and ${RESERVED.envNames.join(', ')} are reserved`,
  fieldPath: '.name',
  check: (self) => !self.name.startsWith(RESERVED.envPrefix) && !(RESERVED.envNames as readonly string[]).includes(self.name),
}, {
  rule: '!(has(self.value) && has(self.valueFrom))',
  message: 'env sets value or valueFrom, not both',
  check: (self) => self.value === undefined || self.valueFrom === undefined,
}]);
export type EnvVar = Static<typeof EnvVar>;

const LocalRef = Type.Object({ name: DnsSubdomain(), optional: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
export const EnvFromSource = withRules(Type.Object({
  prefix: Type.Optional(Type.String({ maxLength: 256, pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$' })),
  configMapRef: Type.Optional(LocalRef),
  secretRef: Type.Optional(LocalRef),
}, { additionalProperties: false }), [
  exactlyOne(['configMapRef', 'secretRef'], 'envFrom must set exactly one of configMapRef, secretRef'),
]);
export type EnvFromSource = Static<typeof EnvFromSource>;

/** A pod volume: the name is checked here, the source (persistentVolumeClaim, configMap, …) by the Pod API. */
export const Volume = withRules(Type.Object({
  name: DnsLabel(63),
}, { additionalProperties: true, 'x-kubernetes-preserve-unknown-fields': true }), [{
  rule: `!self.name.startsWith('${RESERVED.volumePrefix}') && !(self.name in ${celList(RESERVED.volumeNames)})`,
  message: `volume name is the operator's: ${RESERVED.volumePrefix}* and ${RESERVED.volumeNames.join(', ')} are reserved`,
  fieldPath: '.name',
  check: (self) => !self.name.startsWith(RESERVED.volumePrefix) && !(RESERVED.volumeNames as readonly string[]).includes(self.name),
}]);
export type Volume = Static<typeof Volume>;

export const VolumeMount = withRules(Type.Object({
  name: DnsLabel(63),
  /** Absolute, no empty segment, no trailing slash (so that equal paths compare equal). */
  mountPath: Type.String({ minLength: 2, maxLength: 1024, pattern: '^(/[^/]+)+$' }),
  readOnly: Type.Optional(Type.Boolean()),
  subPath: Type.Optional(Type.String({ maxLength: 1024 })),
  subPathExpr: Type.Optional(Type.String({ maxLength: 1024 })),
}, { additionalProperties: false }), [{
  rule: "!(self.mountPath + '/').contains('/../') && !(self.mountPath + '/').contains('/./')",
  message: 'mountPath must not contain . or .. segments',
  fieldPath: '.mountPath',
  check: (self) => !`${self.mountPath}/`.includes('/../') && !`${self.mountPath}/`.includes('/./'),
}, {
  rule: `!${celList(RESERVED.mountPaths)}.exists(p, self.mountPath == p || (p != '/tmp' && self.mountPath.startsWith(p + '/')))`,
  message: `mountPath is the operator's: ${RESERVED.mountPaths.join(', ')} (and below each but /tmp) are reserved`,
  fieldPath: '.mountPath',
  check: (self) => !mountPathReserved(self.mountPath),
}]);
export type VolumeMount = Static<typeof VolumeMount>;

/** A list keyed by one field, as the Pod API's: the API server refuses duplicates, and so does validate(). */
function ListMap<T extends TSchema>(item: T, key: string, maxItems: number) {
  return Type.Array(item, { maxItems, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': [key] });
}

/** The overrides, spread into the pool and learner fields (RLJob templates, RolloutPool and Learner specs). */
export const podOverrideFields = {
  /** Added to every container of the pod, after the operator's own variables (so $(RLKUBE_JOB) works). */
  env: Type.Optional(ListMap(EnvVar, 'name', 64)),
  /** Added to every container; a variable the operator sets explicitly wins over one from here. */
  envFrom: Type.Optional(Type.Array(EnvFromSource, { maxItems: 16 })),
  /** Pod volumes besides the operator's (a PVC of datasets or model caches, a ConfigMap, a Secret, …). */
  volumes: Type.Optional(ListMap(Volume, 'name', 32)),
  /** Mounted in every container; each names one of `volumes`. */
  volumeMounts: Type.Optional(ListMap(VolumeMount, 'mountPath', 32)),
  imagePullSecrets: Type.Optional(ListMap(Type.Object({ name: DnsSubdomain() }, { additionalProperties: false }), 'name', 16)),
  /** Node and pod (anti-)affinity, as in a pod spec; checked by the Pod API. */
  affinity: Type.Optional(Type.Object({
    nodeAffinity: Type.Optional(CoreObject()),
    podAffinity: Type.Optional(CoreObject()),
    podAntiAffinity: Type.Optional(CoreObject()),
  }, { additionalProperties: false })),
  priorityClassName: Type.Optional(DnsSubdomain()),
  /** The pods' identity (e.g. for a cloud's workload identity); the API token itself is still not mounted. */
  serviceAccountName: Type.Optional(DnsSubdomain()),
};
export const PodOverrides = Type.Object(podOverrideFields, { additionalProperties: false });
export type PodOverrides = Static<typeof PodOverrides>;

/** A rule for the object holding the overrides: a mount names one of the user's volumes, never the operator's. */
export const mountsNameVolumes: Rule<{ volumeMounts?: VolumeMount[]; volumes?: Volume[] }> = {
  rule: '!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && self.volumes.exists(v, v.name == m.name))',
  message: 'volumeMounts[].name must name one of volumes[]',
  fieldPath: '.volumeMounts',
  check: (self) => (self.volumeMounts ?? []).every((m: VolumeMount) => (self.volumes ?? []).some((v: Volume) => v.name === m.name)),
};
