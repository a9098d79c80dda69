/**
 * Typed errors of the orchestrator (undici style, lib/core/errors.js): every class has a `name`
 * and a stable `code` users and scripts can match on. A user's mistake carries where it is
 * (file, line, column, field path) and what was expected; the CLI prints `message` alone and
 * exits 2 (usage/validation) or 1 (environment/driver). A stack trace is for our bugs only.
 */

export const ERROR_CODES = {
  TOPOLOGY_INVALID: "TOPOLOGY_INVALID",
  TOPOLOGY_UNREADABLE: "TOPOLOGY_UNREADABLE",
  USAGE: "USAGE",
  DOCKER_UNREACHABLE: "DOCKER_UNREACHABLE",
  RUN_NOT_FOUND: "RUN_NOT_FOUND",
  DRIVER_FAILED: "DRIVER_FAILED",
  DRIVER_UNAVAILABLE: "DRIVER_UNAVAILABLE",
  FEATURE_UNAVAILABLE: "FEATURE_UNAVAILABLE",
} as const;
export type OrchestratorErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** Base class: `instanceof OrchestratorError` means "a known failure, print one line". */
export class OrchestratorError extends Error {
  override readonly name: string = "OrchestratorError";
  readonly code: string;
  /** CLI exit code: 2 for usage/validation mistakes, 1 for everything else. */
  readonly exitCode: 1 | 2;
  constructor(code: string, message: string, exitCode: 1 | 2, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = exitCode;
  }
}

export interface TopologyErrorLocation {
  /** The file as the user named it, e.g. "topologies/lab.yaml". */
  file: string;
  /** 1-based; 0 when the position is unknown. */
  line: number;
  /** 1-based; 0 when the position is unknown. */
  column: number;
  /** Field path like `links[2].impairment.delay` (the user's YAML keys); "" for the whole document. */
  path: string;
  /** What was expected, e.g. `a duration like "20ms"`. */
  expected: string;
  /** What was found, rendered as the user wrote it, e.g. `"fast"`. */
  got: string;
}

/**
 * `topologies/lab.yaml:12:5: links[2].impairment.delay: expected a duration like "20ms", got "fast"`
 */
export class TopologyInvalidError extends OrchestratorError {
  override readonly name = "TopologyInvalidError";
  declare readonly code: "TOPOLOGY_INVALID";
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly path: string;
  readonly expected: string;
  readonly got: string;
  constructor(location: TopologyErrorLocation) {
    const where = location.line > 0 ? `${location.file}:${location.line}:${location.column}` : location.file;
    const field = location.path === "" ? "" : `${location.path}: `;
    super(ERROR_CODES.TOPOLOGY_INVALID, `${where}: ${field}expected ${location.expected}, got ${location.got}`, 2);
    this.file = location.file;
    this.line = location.line;
    this.column = location.column;
    this.path = location.path;
    this.expected = location.expected;
    this.got = location.got;
  }
}

/** The topology file cannot be read (missing, a directory, no permission). */
export class TopologyUnreadableError extends OrchestratorError {
  override readonly name = "TopologyUnreadableError";
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.TOPOLOGY_UNREADABLE, `${file}: cannot read topology: ${reason}`, 2, options);
    this.file = file;
  }
}

/** A bad command line: unknown command or flag, missing argument, bad flag value. */
export class UsageError extends OrchestratorError {
  override readonly name = "UsageError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.USAGE, message, 2, options);
  }
}

export class DockerUnreachableError extends OrchestratorError {
  override readonly name = "DockerUnreachableError";
  constructor(reason: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.DOCKER_UNREACHABLE, `docker engine unreachable: ${reason}`, 1, options);
  }
}

/** No run with that id, or no current run when none was named. */
export class RunNotFoundError extends OrchestratorError {
  override readonly name = "RunNotFoundError";
  readonly runId: string | undefined;
  constructor(runId: string | undefined, hint: string) {
    super(ERROR_CODES.RUN_NOT_FOUND, runId === undefined ? `no current run: ${hint}` : `run ${runId} not found: ${hint}`, 1);
    this.runId = runId;
  }
}

export type DriverErrorCode = "DRIVER_FAILED" | "RUN_NOT_FOUND" | "NODE_NOT_FOUND" | "NETWORK_NOT_FOUND" | "NOTHING_TO_IMPAIR" | "NODE_COMMAND_MISSING" | "NETEM_UNAVAILABLE";

/** A driver call failed; same shape as the drivers' stand-in classes (docker-errors.ts, local-errors.ts). */
export class DriverError extends OrchestratorError {
  override readonly name = "DriverError";
  declare readonly code: DriverErrorCode;
  readonly driver: string;
  constructor(driver: string, code: DriverErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, `${driver} driver: ${message}`, 1, options);
    this.driver = driver;
  }
}

/** A driver module is missing or its engine cannot be used. */
export class DriverUnavailableError extends OrchestratorError {
  override readonly name = "DriverUnavailableError";
  readonly driver: string;
  constructor(driver: string, reason: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.DRIVER_UNAVAILABLE, `${driver} driver not available: ${reason}`, 1, options);
    this.driver = driver;
  }
}

/** A command whose implementation is not in this tree yet (e.g. `images` before orchestrator/images/build.ts exports buildImages). */
export class FeatureUnavailableError extends OrchestratorError {
  override readonly name = "FeatureUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(ERROR_CODES.FEATURE_UNAVAILABLE, message, 1, options);
  }
}
