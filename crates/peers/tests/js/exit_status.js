// Prints two JSON lines and a plain line on stdout, a line on stderr, then exits with 3.
'use strict';
process.stdout.write('{"n":1}\nnot json\n{"n":2}\n');
process.stderr.write('something went wrong\n');
process.exitCode = 3;
