// overview
"use strict";
