// A handle kind for tests: a token that crosses to a child as a handle.
import { type HandleKind, markHandleClass, registerHandleKind } from "../../_handles.ts";

export class Token {
  readonly id: number;
  readonly revived: boolean;
  constructor(id: number, revived = false) {
    this.id = id;
    this.revived = revived;
  }
}

export const tokenKind: HandleKind<Token, { id: number }> = registerHandleKind({
  name: "test-token",
  module: import.meta.url,
  describe: (token, context) => {
    context.grants?.read.add("/tmp/test-token-grant");
    return { id: token.id };
  },
  revive: ({ id }) => new Token(id, true),
});
markHandleClass(Token, tokenKind);
