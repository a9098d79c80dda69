/** Typed error of the image builder (STYLE.md "Errors": a `name` and a stable `code`). */
export type ImageBuildErrorCode = "IMAGE_BUILD_FAILED" | "IMAGE_TOOL_MISSING";

export class ImageBuildError extends Error {
  override readonly name = "ImageBuildError";
  readonly code: ImageBuildErrorCode;
  constructor(code: ImageBuildErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
