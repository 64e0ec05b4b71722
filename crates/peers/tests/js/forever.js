// Never ends on its own.
'use strict';
setInterval(() => {}, 1000);
