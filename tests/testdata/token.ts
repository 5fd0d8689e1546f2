// A handle kind for tests: a token that crosses to a child as a handle.
import { HANDLE, type HandleKind, registerHandleKind } from "../../_handles.ts";

export class Token {
  readonly id: number;
  readonly revived: boolean;
  constructor(id: number, revived = false) {
    this.id = id;
    this.revived = revived;
  }
  get [HANDLE](): HandleKind {
    return tokenKind as HandleKind;
  }
}

export const tokenKind: HandleKind<Token, { id: number }> = registerHandleKind({
  name: "test-token",
  describe: (token, context) => {
    context.grants?.read.add("/tmp/test-token-grant");
    return { id: token.id };
  },
  revive: ({ id }) => new Token(id, true),
});
