// Byte counts as people read them in the API's error messages and the agent's logs ("11.8 MiB", "600 bytes"): one
// formatter, so a size reads the same wherever it is reported.

/** 12345678 -> "11.8 MiB"; exact byte counts below 1 KiB. */
export function formatBytes(n: number | bigint): string {
  const v = typeof n === 'bigint' ? Number(n) : n;
  if (v < 1024) return `${v} byte${v === 1 ? '' : 's'}`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let x = v / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i += 1;
  }
  return `${x < 10 ? x.toFixed(1) : Math.round(x)} ${units[i]}`;
}
