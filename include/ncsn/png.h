/* png.h: pictures of image tensors (libpng). */
#ifndef NCSN_PNG_H
#define NCSN_PNG_H

/* Writes images x [n, C, H, W] in [-1, 1] as a grid with `cols` columns and
 * a 1-pixel gap. C must be 1 (grey) or 3 (RGB). Returns 0, or -1 with errno
 * telling why (and no file left at path). */
int png_write_grid(const char *path, const float *x, int n, int C, int H, int W, int cols);

#endif
