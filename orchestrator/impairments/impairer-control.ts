/**
 * The driver's side of the impairer sidecar's control socket, run inside the sidecar through
 * `docker exec`: `node impairer-control.ts '<request JSON>'` prints the agent's one-line JSON answer
 * and exits 0, or exits 1 when the agent is not listening (yet). See impairer-agent.ts.
 */
import net from "node:net";
import { CONTROL_SOCKET } from "./impairer-protocol.ts";

const TIMEOUT_MS = 20_000;

const request = process.argv[2];
if (request === undefined) {
  process.stderr.write("usage: node impairer-control.ts '<request JSON>'\n");
  process.exit(2);
}
const connection = net.createConnection(CONTROL_SOCKET);
let answer = "";
const timer = setTimeout(() => {
  process.stderr.write(`no answer from the impairer within ${TIMEOUT_MS} ms\n`);
  process.exit(1);
}, TIMEOUT_MS);
connection.on("connect", () => connection.write(`${request}\n`));
connection.on("data", (chunk: Buffer) => (answer += chunk.toString()));
connection.on("end", () => {
  clearTimeout(timer);
  process.stdout.write(answer);
  process.exit(0);
});
connection.on("error", (error) => {
  clearTimeout(timer);
  process.stderr.write(`impairer control socket ${CONTROL_SOCKET}: ${error.message}\n`);
  process.exit(1);
});
