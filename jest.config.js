// Jest in ESM mode: three projects (unit, integration, e2e) over the same ts-jest transform.
// (In ESM mode the `jest` global is absent: import it from '@jest/globals'; the test timeout is set below.)
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // infra/ is its own package (no image carries Pulumi): its unit test shares infra's one copy of the SDK
    '^(@pulumi/.*)$': '<rootDir>/infra/node_modules/$1',
  },
  transform: { '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }] },
  testEnvironment: 'node',
};

export default {
  // Per-test limit for integration/e2e waits (each wait has its own, clearer timeout); global, as jest wants.
  testTimeout: 600_000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.test.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.test.ts'] },
  ],
};
