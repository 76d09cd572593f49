// A user's pod-level overrides (api/pod-overrides.ts) laid over a pod spec the operator built. Pure.
// Validation refuses the names the operator reserves; should one get through anyway (an object stored
// before a name was reserved), the operator's entry wins and the user's is left out.
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import type { PodOverrides } from '../../api/index.js';

const names = (list: ReadonlyArray<{ name: string }> | undefined) => new Set((list ?? []).map((x) => x.name));

/** One container with the user's env, envFrom and mounts after its own; its own names and paths win. */
function overContainer(container: V1Container, overrides: PodOverrides, operatorVolumes: Set<string>): V1Container {
  const ownEnv = names(container.env);
  const env = [...(container.env ?? []), ...(overrides.env ?? []).filter((e) => !ownEnv.has(e.name))];
  const envFrom = [...(container.envFrom ?? []), ...(overrides.envFrom ?? [])];
  const ownPaths = new Set((container.volumeMounts ?? []).map((m) => m.mountPath));
  const mounts = [
    ...(container.volumeMounts ?? []),
    ...(overrides.volumeMounts ?? []).filter((m) => !ownPaths.has(m.mountPath) && !operatorVolumes.has(m.name)),
  ];
  return {
    ...container,
    ...(env.length > 0 ? { env } : {}),
    ...(envFrom.length > 0 ? { envFrom } : {}),
    ...(mounts.length > 0 ? { volumeMounts: mounts } : {}),
  };
}

/**
 * env, envFrom and volumeMounts go to every container (the environment server and the agent read datasets,
 * the engine and trainer read models); volumes, pull secrets, affinity, priority and service account to
 * the pod. Fields the operator owns (security context, automountServiceAccountToken, ports, probes) are
 * not overridable at all.
 */
export function withPodOverrides(spec: V1PodSpec, overrides: PodOverrides | undefined): V1PodSpec {
  if (!overrides) return spec;
  const operatorVolumes = names(spec.volumes);
  const volumes = [...(spec.volumes ?? []), ...(overrides.volumes ?? []).filter((v) => !operatorVolumes.has(v.name))];
  return {
    ...spec,
    containers: spec.containers.map((c) => overContainer(c, overrides, operatorVolumes)),
    ...(spec.initContainers ? { initContainers: spec.initContainers.map((c) => overContainer(c, overrides, operatorVolumes)) } : {}),
    ...(volumes.length > 0 ? { volumes } : {}),
    ...(overrides.imagePullSecrets?.length ? { imagePullSecrets: overrides.imagePullSecrets } : {}),
    ...(overrides.affinity ? { affinity: overrides.affinity } : {}),
    ...(overrides.priorityClassName ? { priorityClassName: overrides.priorityClassName } : {}),
    ...(overrides.serviceAccountName ? { serviceAccountName: overrides.serviceAccountName } : {}),
  };
}
