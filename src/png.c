/* png.c: see png.h. Values are mapped from [-1, 1] to 0..255 with clamping. */
#include "ncsn/png.h"

#include <png.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ncsn/common.h"

int png_write_grid(const char *path, const float *x, int n, int C, int H, int W, int cols)
{
    if (n < 1 || (C != 1 && C != 3)) return -1;
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols, gap = 1;
    int GW = cols * (W + gap) + gap, GH = rows * (H + gap) + gap;
    unsigned char *pix = xcalloc((size_t)GW * GH * C, 1);
    for (int i = 0; i < n; i++) {
        int oy = gap + (i / cols) * (H + gap), ox = gap + (i % cols) * (W + gap);
        for (int c = 0; c < C; c++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    float v = x[(((size_t)i * C + c) * H + h) * W + w];
                    float u = (v + 1.0f) * 127.5f;
                    u = u < 0 ? 0 : u > 255 ? 255 : u;
                    pix[((size_t)(oy + h) * GW + ox + w) * C + c] = (unsigned char)(u + 0.5f);
                }
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        int why = errno;
        free(pix);
        errno = why;
        return -1;
    }
    errno = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        int why = errno ? errno : EIO; /* the failed fwrite's */
        png_destroy_write_struct(&png, &info);
        fclose(f);
        unlink(path);
        free(pix);
        errno = why;
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)GW, (png_uint_32)GH, 8, C == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < GH; y++) png_write_row(png, pix + (size_t)y * GW * C);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(pix);
    if (fclose(f) == 0) return 0;
    int why = errno; /* why the last write failed */
    unlink(path);
    errno = why;
    return -1;
}
