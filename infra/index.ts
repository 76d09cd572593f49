// The Pulumi program (`cd infra && pulumi up`): reads the stack's `rlkube:*` settings and stands up the platform.
// A bad setting stops the program before any resource is registered, so nothing is created.
import * as pulumi from '@pulumi/pulumi';
import { InfraConfigError, parsePlatformConfig, type PlatformConfig } from './config.js';
import { RlkubePlatform } from './platform.js';

const settings = new pulumi.Config('rlkube');

/**
 * Every `rlkube:*` key the stack sets, objects and lists parsed, so that a key the schema does not know is refused
 * too (a misspelt or flat key would otherwise be ignored without a word).
 */
function givenSettings(): Record<string, unknown> {
  const keys = Object.keys(pulumi.runtime.allConfig()).filter((k) => k.startsWith('rlkube:')).map((k) => k.slice('rlkube:'.length));
  return Object.fromEntries(keys.map((key) => {
    const text = settings.require(key);
    try {
      return [key, JSON.parse(text)];
    } catch {
      return [key, text]; // a plain string (systemNamespace)
    }
  }));
}

function readSettings(): PlatformConfig {
  try {
    return parsePlatformConfig(givenSettings());
  } catch (err) {
    if (!(err instanceof InfraConfigError)) throw err;
    // RunError: Pulumi prints the message alone. It still formats the error's stack with util.inspect, which for
    // frames of this module's evaluation under tsx took ~13 CPU-seconds (a refusal in 44 s instead of 4 s).
    const refusal = new pulumi.RunError(err.message);
    refusal.stack = `${refusal.name}: ${refusal.message}`;
    throw refusal;
  }
}

const platform = new RlkubePlatform('rlkube', readSettings());

export const natsUrl = platform.natsUrl;
export const systemNamespace = platform.systemNamespace;
export const jobNamespaces = platform.jobNamespaces;
