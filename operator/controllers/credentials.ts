// Each job's NATS credentials as a Secret its pods mount (operator/nats-auth.ts makes and revokes the
// identity). The job's signing key is granted in the account before the Secret exists, so credentials a
// pod can mount always work; deleting the job revokes the key first, then removes the Secret.
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { RLJob } from '../../api/index.js';
import { RESOURCES, isNotFound, type KubeClient, type KubeObject } from '../kube/client.js';
import type { Informer } from '../kube/informer.js';
import type { IssuedIdentity } from '../nats-auth.js';
import { NATS_CREDS_KEY } from './builders.js';
import { LABELS, MANAGED_SELECTOR, OPERATOR_NAME, SIGNING_KEY_ANNOTATION, controllerOf, controllerRef, natsCredentialsName } from './meta.js';

/** What JobIdentities offers (a narrow seam, so the Secret logic does not care how keys reach the servers). */
export interface IdentityIssuer {
  issue(job: { namespace: string; name: string }): IssuedIdentity;
  keyOf(jobKey: string): string | undefined;
  grant(jobKey: string, signingKey: string): Promise<void>;
  revoke(jobKey: string): Promise<void>;
  reset(keys: Map<string, string>): Promise<void>;
}

export type SecretCache = Informer<V1Secret & KubeObject>;

/** Only what the operator reads of its Secrets: the credentials stay out of its memory. */
export const slimSecret = (secret: V1Secret & KubeObject) => { secret.data = undefined; secret.stringData = undefined; };
export const SECRET_SELECTOR = MANAGED_SELECTOR;

export function buildCredentialsSecret(job: RLJob, issued: IssuedIdentity): V1Secret & KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: natsCredentialsName(job.metadata.name), namespace: job.metadata.namespace,
      labels: { [LABELS.name]: 'rlkube', [LABELS.managedBy]: OPERATOR_NAME, [LABELS.job]: job.metadata.name },
      annotations: { [SIGNING_KEY_ANNOTATION]: issued.signingKey },
      ownerReferences: [controllerRef(job)],
    },
    data: { [NATS_CREDS_KEY]: Buffer.from(issued.creds).toString('base64') },
  };
}

const jobKey = (job: RLJob) => `${job.metadata.namespace}/${job.metadata.name}`;

export class JobCredentials {
  constructor(private readonly issuer: IdentityIssuer, private readonly secrets: SecretCache, private readonly client: KubeClient, private readonly log: Logger) {}

  /** The signing key on the job's own Secret (ours, for this very job), if the cache shows one. */
  private keyOnSecret(job: RLJob, secret: (V1Secret & KubeObject) | undefined): string | undefined {
    if (!secret || secret.metadata?.deletionTimestamp || controllerOf(secret)?.uid !== job.metadata.uid) return undefined;
    return secret.metadata?.annotations?.[SIGNING_KEY_ANNOTATION];
  }

  /** After the caches are filled: the account lists exactly the keys of the jobs' Secrets (a crash may have left others). */
  async start(liveJobs: RLJob[]): Promise<void> {
    const keys = new Map<string, string>();
    for (const job of liveJobs) {
      const key = this.keyOnSecret(job, this.secrets.get(job.metadata.namespace!, natsCredentialsName(job.metadata.name)));
      if (key) keys.set(jobKey(job), key);
    }
    await this.issuer.reset(keys);
  }

  /** The job has working credentials in its Secret (idempotent; a lost or foreign Secret gets a new identity). */
  async ensure(job: RLJob): Promise<void> {
    const k = jobKey(job);
    const name = natsCredentialsName(job.metadata.name);
    const cached = this.keyOnSecret(job, this.secrets.get(job.metadata.namespace!, name));
    if (cached) return this.issuer.grant(k, cached);
    const granted = this.issuer.keyOf(k);
    if (granted) {
      // Issued by us and not in the cache yet, or deleted by someone: ask the API server which.
      const live = await this.client.get<V1Secret & KubeObject>(RESOURCES.secrets, job.metadata.namespace, name).catch((err) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      if (this.keyOnSecret(job, live) === granted) return;
    }
    const issued = this.issuer.issue({ namespace: job.metadata.namespace!, name: job.metadata.name });
    await this.issuer.grant(k, issued.signingKey);
    await this.client.apply(RESOURCES.secrets, buildCredentialsSecret(job, issued));
    this.log.info({ job: job.metadata.name, namespace: job.metadata.namespace, signingKey: issued.signingKey }, 'NATS credentials issued');
  }

  /** Revokes the job's identity at the servers (its connections are closed), then removes its Secret. */
  async revoke(job: RLJob): Promise<void> {
    await this.forget(jobKey(job));
    await this.client.delete(RESOURCES.secrets, job.metadata.namespace, natsCredentialsName(job.metadata.name)).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }

  /** The job is gone (its Secret goes with it, by owner reference): revoke its key if still listed. */
  forget(key: string): Promise<void> {
    return this.issuer.revoke(key);
  }
}
