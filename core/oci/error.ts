// The OCI commands' error: exit status 1 by default, as runc's, or the one given (125: nsrun failed).
import { NsrunError } from "../../ffi/error";

export class OciError extends NsrunError {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
