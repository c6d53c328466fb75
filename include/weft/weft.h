/* weft/weft.h - the umbrella include. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include "weft/export.h"
#include "weft/errors.h"
#include "weft/log.h"
#include "weft/runtime.h"
#include "weft/actor.h"
#include "weft/error.h"
#include "weft/task.h"
#include "weft/context.h"
#include "weft/nursery.h"
#include "weft/net.h"
#include "weft/process.h"

#endif /* WEFT_WEFT_H */
