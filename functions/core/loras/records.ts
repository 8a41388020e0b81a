// The stored shape of a LoRA in Cosmos (`loras` container, partition key /owner_id) and the blob naming rules.
// User LoRAs: id = flat_file_id, owner_id = the tenant. Shared (system) LoRAs: id = `shared:<filename>`,
// owner_id = SHARED_OWNER. Blob names are generated here, never taken from the client.
import type { LoraStatus } from '../../../contract/loras.js';

export const SHARED_OWNER = '_shared';

export interface LoraDoc {
  id: string;
  owner_id: string;
  kind: 'user' | 'shared';
  /** flat_file_id (user) or filename (shared): the key agents cache it under. */
  key: string;
  container: string;
  blob_name: string;
  /** Sanitized; shown back to the user only. */
  original_name: string;
  /** Declared at upload start; replaced by the real size once validated. */
  size_bytes: number;
  sha256: string | null;
  status: LoraStatus;
  reject_reason: string | null;
  created_at: string;
  updated_at: string;
  /** While uploading: when the upload SAS expires and the session may be swept. */
  upload_expires_at: string | null;
  /** ETag of the blob version that was validated (redelivered events for it are no-ops). */
  validated_blob_etag?: string | null;
  /**
   * How the bytes arrive. 'direct': multipart through the API, and that request validates the blob (the BlobCreated
   * trigger leaves it alone while it is in flight). 'sas': the client PUTs to a SAS URL and the trigger validates.
   */
  upload_flow?: 'direct' | 'sas';
  /** Machine-readable reason when rejected: a safetensors validation code, 'quota_exceeded', 'too_large' or 'replaced'. */
  reject_code?: string | null;
  /** Cosmos per-item time to live in seconds (rejected records and upload sessions only; see retention.ts). */
  ttl?: number;
  /** When `ttl` runs out (ISO): lets reads and the local emulator, which does not expire items, agree with Cosmos. */
  retain_until?: string;
  _etag?: string;
}

export const sharedLoraDocId = (filename: string): string => `shared:${filename}`;
export const userLoraBlobName = (tenantId: string, flatFileId: string): string => `users/${tenantId}/${flatFileId}.safetensors`;
export const sharedLoraBlobName = (filename: string): string => `shared/${filename}`;
