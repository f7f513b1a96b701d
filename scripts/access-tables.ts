/** Prints the access tables of docs/security.md, rendered from the rules the service enforces (src/access/). */
import { renderAccessTables } from '../src/access/access-tables.ts';

process.stdout.write(`${renderAccessTables()}\n`);
