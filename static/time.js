// time
"use strict";
