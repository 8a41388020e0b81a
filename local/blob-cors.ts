// Azurite answers browser preflights only when the account has CORS rules, like a real storage account (Bicep sets
// them from BLOB_CORS_ALLOWED_ORIGINS). Locally any origin may PUT to a SAS URL: the SAS itself is the permission.
import type { BlobServiceClient } from '@azure/storage-blob';

export async function allowBrowserUploads(blobService: BlobServiceClient): Promise<void> {
  const props = await blobService.getProperties();
  const rule = {
    allowedOrigins: '*',
    allowedMethods: 'GET,HEAD,PUT,OPTIONS',
    allowedHeaders: '*',
    exposedHeaders: '*',
    maxAgeInSeconds: 3600,
  };
  if (props.cors?.some((r) => r.allowedOrigins === '*' && r.allowedMethods.includes('PUT'))) return;
  await blobService.setProperties({ cors: [...(props.cors ?? []), rule] });
}
