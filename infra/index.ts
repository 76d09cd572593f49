// The Pulumi program (`cd infra && pulumi up`): reads the stack's `rlkube:*` settings and stands up the platform.
import * as pulumi from '@pulumi/pulumi';
import { parsePlatformConfig } from './config.js';
import { RlkubePlatform } from './platform.js';

const settings = new pulumi.Config('rlkube');
const platform = new RlkubePlatform(
  'rlkube',
  parsePlatformConfig({
    systemNamespace: settings.get('systemNamespace'),
    jobNamespaces: settings.getObject('jobNamespaces'),
    nats: settings.getObject('nats'),
    gpu: settings.getObject('gpu'),
    operator: settings.getObject('operator'),
  }),
);

export const natsUrl = platform.natsUrl;
export const systemNamespace = platform.systemNamespace;
export const jobNamespaces = platform.jobNamespaces;
