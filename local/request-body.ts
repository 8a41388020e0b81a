// The request body the dev host hands a trigger, and what happens to the part the trigger did not read.
import type { IncomingMessage } from 'node:http';
import { finished } from 'node:stream';

/**
 * After an answer, the dev host reads and drops at most this much of a request body the trigger left unread, so the
 * connection can serve the next request; past it, the connection is closed. The Functions host's own request body
 * limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, 100 MB) plus room for multipart framing: every body the API accepts fits.
 */
export const DRAIN_LIMIT_BYTES = 100 * 1024 * 1024 + 64 * 1024;

export interface RequestBody {
  /** What the trigger reads: fed from the socket as it pulls, so an unread body holds the client back (backpressure). */
  stream: ReadableStream<Uint8Array>;
  /**
   * The trigger has answered: drop whatever of the body is still coming instead of leaving it unread. Without this a
   * client that sends its whole body before reading the answer stalls, and the connection is reset once the server's
   * idle timer fires; the real host (Kestrel) drains the same way. `onOverLimit` runs if more than DRAIN_LIMIT_BYTES
   * arrive after the answer (the caller closes the connection). A reader still holding `stream` gets nothing more.
   */
  discardRest(onOverLimit: () => void): void;
}

export function requestBody(req: IncomingMessage): RequestBody {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let feeding = true;
  let discarding = false;
  let dropped = 0;
  let overLimit: (() => void) | undefined;

  const discard = () => {
    feeding = false;
    if (discarding) return;
    discarding = true;
    req.resume();
  };
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => {
      controller = c;
    },
    pull: () => {
      req.resume();
    },
    // A trigger that stops reading (a body over its limit) must not reset the connection: its answer still has to
    // reach the client. The rest is dropped.
    cancel: discard,
  });
  req.on('data', (chunk: Buffer) => {
    if (feeding) {
      controller.enqueue(new Uint8Array(chunk)); // a copy: the chunk may share a pooled buffer (as Readable.toWeb does)
      if ((controller.desiredSize ?? 0) <= 0) req.pause();
      return;
    }
    dropped += chunk.length;
    if (dropped > DRAIN_LIMIT_BYTES && overLimit) {
      const close = overLimit;
      overLimit = undefined;
      close();
    }
  });
  finished(req, (err) => {
    if (!feeding) return;
    feeding = false;
    if (err) controller.error(err);
    else controller.close();
  });
  return {
    stream,
    discardRest: (onOverLimit) => {
      overLimit = onOverLimit;
      discard();
    },
  };
}
