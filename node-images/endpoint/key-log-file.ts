/**
 * SSLKEYLOGFILE: the NSS key log lines our TLS produces (TlsConfig.keyLog, quic/tls/key-log.ts) appended to
 * one file, so Wireshark (and the interop runner's trace checks) can decrypt the capture. Written
 * synchronously, line by line: a handful of lines per connection, and a line must be on disk before the
 * packets it decrypts are worth anything.
 */
import { closeSync, openSync, writeSync } from "node:fs";

export class KeyLogFile {
  readonly path: string;
  linesWritten = 0;
  private fd: number | undefined;

  constructor(path: string) {
    this.path = path;
    // "a": the runner gives client and server the same kind of file; several processes may append.
    this.fd = openSync(path, "a", 0o600);
  }

  /** The TlsConfig.keyLog callback. */
  readonly append = (line: string): void => {
    if (this.fd === undefined) return;
    writeSync(this.fd, `${line}\n`);
    this.linesWritten++;
  };

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
