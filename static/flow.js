// flow
"use strict";
