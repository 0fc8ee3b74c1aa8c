/** The run card a command takes: `--config <run.json>` (a card the studio exported) or `--preset paper|quick`. */
import { readFile } from 'node:fs/promises';
import { ConfigError, LesionError } from '../core/errors.ts';
import { parseRunCard, presetCard, type PresetName, type RunCard } from '../core/config.ts';

export async function readCard(configPath: string | undefined, preset: string | undefined): Promise<RunCard> {
  if (preset !== undefined) {
    if (preset !== 'paper' && preset !== 'quick') throw new ConfigError('--preset', `must be "paper" or "quick", got "${preset}"`);
    return presetCard(preset as PresetName);
  }
  const text = await readFile(configPath!, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(configPath!, `not valid JSON (${(error as Error).message})`);
  }
  try {
    return parseRunCard(json);
  } catch (error) {
    // The field alone does not say which file holds it.
    if (error instanceof ConfigError) throw new LesionError('config', error.message, configPath);
    throw error;
  }
}
