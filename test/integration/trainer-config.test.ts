// The committed description of the trainer's settings (api/generated/trainer-config.json, which the unit tests
// check the RLJob against without Python) is what the trainer's configuration says today.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { projectPython } from '../../local/python.js';

describe('trainer settings description', () => {
  it('api/generated/trainer-config.json equals `python -m rlkube_trainer.config describe` (regenerate it with that command)', () => {
    const printed = execFileSync(projectPython(), ['-m', 'rlkube_trainer.config', 'describe'], { encoding: 'utf8' });
    const committed = readFileSync(new URL('../../api/generated/trainer-config.json', import.meta.url), 'utf8');
    expect(committed).toBe(printed);
  });
});
