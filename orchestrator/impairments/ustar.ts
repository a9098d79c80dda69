/**
 * A minimal POSIX ustar archive writer (regular files and directories, names under 100 bytes): the
 * Docker driver copies the impairer's sources into its sidecar with `putArchive`, which takes a tar.
 */
const BLOCK = 512;

export interface UstarEntry {
  /** Relative path; directories end with "/". */
  name: string;
  /** File contents; absent for directories. */
  data?: Buffer;
  mode?: number;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(entry: UstarEntry): Buffer {
  const isDirectory = entry.name.endsWith("/");
  const name = Buffer.from(entry.name, "utf8");
  if (name.length >= 100) throw new Error(`ustar: name longer than 99 bytes: ${entry.name}`);
  const block = Buffer.alloc(BLOCK);
  name.copy(block, 0);
  block.write(octal(entry.mode ?? (isDirectory ? 0o755 : 0o644), 8), 100, "ascii");
  block.write(octal(0, 8), 108, "ascii"); // uid
  block.write(octal(0, 8), 116, "ascii"); // gid
  block.write(octal(isDirectory ? 0 : (entry.data?.length ?? 0), 12), 124, "ascii");
  block.write(octal(0, 12), 136, "ascii"); // mtime: fixed, so the same sources give the same archive
  block.write("        ", 148, "ascii"); // checksum placeholder: eight spaces while summing
  block.write(isDirectory ? "5" : "0", 156, "ascii");
  block.write("ustar\0", 257, "ascii");
  block.write("00", 263, "ascii");
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + " ", 148, "ascii");
  return block;
}

export function ustarArchive(entries: readonly UstarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(header(entry));
    if (!entry.name.endsWith("/") && entry.data !== undefined && entry.data.length > 0) {
      parts.push(entry.data, Buffer.alloc((BLOCK - (entry.data.length % BLOCK)) % BLOCK));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK)); // end of archive
  return Buffer.concat(parts);
}
