// Short-lived, single-blob SAS URLs. Azure: user-delegation SAS (signed with a key obtained through the app's
// identity, so no account key exists in settings). Local: account-key SAS from the Azurite connection string.
import {
  BlobSASPermissions,
  generateBlobSASQueryParameters,
  SASProtocol,
  type BlobServiceClient,
  type UserDelegationKey,
} from '@azure/storage-blob';

export type SasPermission = 'read' | 'create-write';

const SKEW_MS = 5 * 60_000; // clocks drift: start the SAS a little in the past

export class BlobSas {
  private delegationKey?: { key: UserDelegationKey; expiresOn: Date };
  constructor(private readonly service: BlobServiceClient) {}

  async url(container: string, blobName: string, permission: SasPermission, expiresOn: Date): Promise<string> {
    const blob = this.service.getContainerClient(container).getBlockBlobClient(blobName);
    const permissions = BlobSASPermissions.parse(permission === 'read' ? 'r' : 'cw');
    const startsOn = new Date(Date.now() - SKEW_MS);
    const isHttps = blob.url.startsWith('https:');
    if (this.service.credential && 'accountName' in this.service.credential && 'computeHMACSHA256' in this.service.credential) {
      return blob.generateSasUrl({ permissions, startsOn, expiresOn, protocol: isHttps ? SASProtocol.Https : SASProtocol.HttpsAndHttp });
    }
    const key = await this.userDelegationKey(expiresOn);
    const sas = generateBlobSASQueryParameters(
      { containerName: container, blobName, permissions, startsOn, expiresOn, protocol: SASProtocol.Https },
      key,
      this.service.accountName,
    ).toString();
    return `${blob.url}?${sas}`;
  }

  /** One delegation key serves many SAS URLs; refreshed when it would expire before the SAS does. */
  private async userDelegationKey(until: Date): Promise<UserDelegationKey> {
    if (this.delegationKey && this.delegationKey.expiresOn.getTime() > until.getTime() + 60_000) return this.delegationKey.key;
    const startsOn = new Date(Date.now() - SKEW_MS);
    const expiresOn = new Date(Math.max(until.getTime() + 60 * 60_000, Date.now() + 6 * 3600_000));
    const key = await this.service.getUserDelegationKey(startsOn, expiresOn);
    this.delegationKey = { key, expiresOn };
    return key;
  }
}
