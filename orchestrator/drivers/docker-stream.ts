/**
 * Docker's multiplexed stream format (attach/logs/exec without a TTY): frames of an 8-byte header
 * [stream type (1 = stdout, 2 = stderr), 0, 0, 0, payload length (uint32 big-endian)] then the payload.
 */
export function demuxDockerStream(buffer: Buffer): { stdout: string; stderr: string } {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const type = buffer[offset];
    const length = buffer.readUInt32BE(offset + 4);
    const payload = buffer.subarray(offset + 8, offset + 8 + length);
    if (type === 2) stderr.push(payload);
    else stdout.push(payload);
    offset += 8 + length;
  }
  return { stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() };
}
