/**
 * The run card being edited. Every edit is validated with the core's
 * parseRunCard, so the form shows exactly the error an import or the CLI
 * would give, naming the field. The draft survives a reload (localStorage:
 * a few hundred bytes, no need for IndexedDB).
 */
import { ConfigError } from '../core/errors.ts';
import { parseRunCard, presetCard, type PresetName, type RunCard } from '../core/config.ts';

const DRAFT_KEY = 'lesion-studio/card-draft';

export class CardState {
  card = $state<RunCard>(loadDraft());
  /** The first problem, as parseRunCard words it, and the field it names. */
  error = $derived(validate(this.card));
  importError = $state<string | undefined>();

  constructor() {
    $effect.root(() => {
      $effect(() => {
        localStorage.setItem(DRAFT_KEY, JSON.stringify(this.snapshot()));
      });
    });
  }

  snapshot(): RunCard {
    return $state.snapshot(this.card) as RunCard;
  }

  applyPreset(name: PresetName): void {
    this.card = presetCard(name);
    this.importError = undefined;
  }

  get(path: string): unknown {
    return path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown> | undefined)?.[key], this.card);
  }

  set(path: string, value: unknown): void {
    const keys = path.split('.');
    const parent = keys.slice(0, -1).reduce<Record<string, unknown>>((o, key) => o[key] as Record<string, unknown>, this.card as never);
    parent[keys[keys.length - 1]] = value;
  }

  /** Replaces the card only if the JSON is a valid card; otherwise says which field is wrong. */
  importJson(text: string): boolean {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      this.importError = `not JSON: ${(error as Error).message}`;
      return false;
    }
    try {
      this.card = parseRunCard(parsed);
      this.importError = undefined;
      return true;
    } catch (error) {
      this.importError = error instanceof ConfigError ? error.message : String(error);
      return false;
    }
  }

  exportJson(): string {
    return `${JSON.stringify(this.snapshot(), null, 2)}\n`;
  }
}

function validate(card: RunCard): { field: string; message: string } | undefined {
  try {
    parseRunCard($state.snapshot(card));
    return undefined;
  } catch (error) {
    if (error instanceof ConfigError) return { field: error.field, message: error.message };
    return { field: 'card', message: String(error) };
  }
}

function loadDraft(): RunCard {
  try {
    const text = localStorage.getItem(DRAFT_KEY);
    if (text) return parseRunCard(JSON.parse(text));
  } catch {
    // A draft from an older studio that no longer validates: start from the preset.
  }
  return presetCard('quick');
}
