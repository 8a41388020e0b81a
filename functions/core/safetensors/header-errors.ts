// The failure a header parse stops with: a validation code and a sentence for the uploader.
export type HeaderParseCode =
  | 'header_not_utf8'
  | 'header_bad_json'
  | 'header_too_deep'
  | 'header_not_object'
  | 'header_too_many_entries'
  | 'bad_metadata'
  | 'bad_tensor_entry'
  | 'unknown_dtype'
  | 'bad_shape'
  | 'bad_offsets';

export class HeaderParseError extends Error {
  constructor(
    readonly code: HeaderParseCode,
    reason: string,
  ) {
    super(reason);
  }
}
