// Event Grid BlobCreated for both LoRA containers: validate the new blob and settle its record (ready | rejected).
// Delivery is at-least-once and unordered; the core decides from the stored state, so redelivery is a no-op.
import { app } from '@azure/functions';
import '../host-setup.js';
import { handleBlobCreated } from '../core/loras/blob-events.js';
import { coreDeps } from '../core/deps.js';
import { loraDeps } from '../core/loras/deps.js';
import { hintUploadedLora } from '../core/tick/upload-hint.js';
import { getServices } from '../core/services.js';

app.eventGrid('loraBlobCreated', {
  handler: async (event, context) => {
    const services = getServices();
    const { doc, ...result } = await handleBlobCreated(loraDeps(services), event);
    if (doc) await hintUploadedLora(coreDeps(services), doc); // PREWARM_HINTS only; never fails the event
    if (result.outcome !== 'ignored' && result.outcome !== 'no_op') {
      services.log.info({ fn: context.functionName, subject: event.subject, ...result }, 'blob event handled');
    }
  },
});
