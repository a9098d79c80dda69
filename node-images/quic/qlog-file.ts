/**
 * The file side of qlog (main schema -13 §"Set file output destination via an environment variable"):
 * with a QLOGDIR, every connection gets `<QLOGDIR>/<odcid>_<vantage>.sqlog`, a JSON-SEQ file appended
 * in batches as the trace fills and closed with the connection. qlog.ts makes the text; this file only
 * writes it. Like udp-endpoint.ts it is an I/O adapter (test/quic/core-purity.test.ts lists both).
 *
 * Who reads QLOGDIR is the role's business (the endpoint script, the node roles): they pass the
 * directory to `UdpEndpoint.bind({ qlogDir })`, which builds a QlogDirectory.
 */
import { mkdirSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { QlogTrace, type QlogConnectionInfo, type QlogFactory, type QlogSink } from "./qlog.ts";

export interface QlogDirectoryOptions {
  /** Add the qlog 0.3 header fields qvis needs (README: qvis compatibility). */
  qvisCompatible?: boolean;
  /** Events buffered per connection before a write. */
  batchEvents?: number;
}

export class QlogDirectory {
  readonly dir: string;
  /** Files created so far (absolute paths). */
  readonly files: string[] = [];
  /** Write failures (disk full, permissions): counted and kept, never thrown into the QUIC core. */
  readonly errors: Error[] = [];
  private readonly options: QlogDirectoryOptions;
  private readonly open = new Set<QlogTrace>();
  private readonly writes = new Set<Promise<void>>();

  constructor(dir: string, options: QlogDirectoryOptions = {}) {
    this.dir = dir;
    this.options = options;
    mkdirSync(dir, { recursive: true });
  }

  /** The ConnectionConfig.qlog factory: one trace and one file per connection. */
  readonly factory: QlogFactory = (info: QlogConnectionInfo) => {
    const odcid = info.originalDestinationConnectionId.toString("hex");
    const path = join(this.dir, `${odcid}_${info.role}.sqlog`);
    const file = new QlogFileSink(path, this);
    this.files.push(path);
    const trace = new QlogTrace({
      vantagePoint: info.role,
      originalDestinationConnectionId: info.originalDestinationConnectionId,
      startedAt: info.now,
      wallClockTime: new Date().toISOString(),
      qvisCompatible: this.options.qvisCompatible,
      batchEvents: this.options.batchEvents,
      sink: {
        write: (chunk) => file.write(chunk),
        close: () => {
          this.open.delete(trace);
          file.close();
        },
      },
    });
    this.open.add(trace);
    return trace;
  };

  /** Flush and close every trace still open (connections alive at shutdown), then wait for the disk. */
  async close(): Promise<void> {
    for (const trace of [...this.open]) trace.finish();
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /** @internal bookkeeping for QlogFileSink */
  track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => {
      this.errors.push(err instanceof Error ? err : new Error(String(err)));
    });
    this.writes.add(tracked);
    void tracked.finally(() => this.writes.delete(tracked));
  }
}

/** Appends chunks in order to one file; opened on the first chunk, closed after the last. */
class QlogFileSink implements QlogSink {
  private readonly path: string;
  private readonly owner: QlogDirectory;
  private chain: Promise<FileHandle | undefined> | undefined;

  constructor(path: string, owner: QlogDirectory) {
    this.path = path;
    this.owner = owner;
  }

  write(chunk: string): void {
    // "a": append; the trace writes its header first, so a file is always a valid JSON-SEQ prefix.
    const previous = this.chain ?? open(this.path, "a");
    const next = previous.then(async (h) => {
      await h?.appendFile(chunk, "utf8");
      return h;
    });
    this.chain = next;
    this.owner.track(next.then(() => undefined));
  }

  close(): void {
    const previous = this.chain;
    if (!previous) return;
    this.chain = previous.then(async (h) => {
      await h?.close();
      return undefined;
    });
    this.owner.track(this.chain.then(() => undefined));
  }
}
