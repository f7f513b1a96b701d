import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { OperationOutcomeIssue } from '@medplum/fhirtypes';
import { FHIR_JSON } from '../fhir/constants.ts';
import { issue, outcome } from '../fhir/outcomes.ts';

/** What Node's HTTP parser refused, as Node itself would answer it (see `socketOnError` in node:_http_server). */
function refusal(code: string | undefined): [number, OperationOutcomeIssue] {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, issue('too-long', 'The request header fields are too large')];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, issue('too-long', 'The request chunk extensions are too large')];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, issue('timeout', 'The request was not received in time')];
    default:
      return [400, issue('invalid', 'The request is not valid HTTP/1.1 (malformed request line or header)')];
  }
}

/**
 * The server's 'clientError' listener: a request Node's HTTP parser refused (headers too large,
 * a malformed header or request line) never reaches Express, and Node would answer it with an
 * empty body. This answers the same status with an OperationOutcome, so every refusal a client
 * sees is FHIR, then closes the connection. Nothing is written when the socket is gone or a
 * response on it has started (writing would corrupt it); the socket is destroyed either way.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, problem] = refusal(err.code);
  const body = JSON.stringify(outcome([problem]));
  const head = [`HTTP/1.1 ${status} ${STATUS_CODES[status]}`, `Content-Type: ${FHIR_JSON}; charset=utf-8`, `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}
