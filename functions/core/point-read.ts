// A Cosmos point read that answers null for a missing item (404) and throws anything else: the one definition of the
// "read it, or it is absent" step the stores share.
import type { Container, ItemDefinition } from '@azure/cosmos';
import { isNotFound } from './sdk-errors.js';

export async function readItem<T extends ItemDefinition>(container: Container, id: string, partitionKey: string): Promise<T | null> {
  try {
    const { resource } = await container.item(id, partitionKey).read<T>();
    return resource ?? null;
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
}
